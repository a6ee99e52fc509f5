// The img2img fixtures (tests/fixtures/img2img, made by make_img2img_fixtures.py) as the API tests read them: the
// CPU test (tests/api_img2img_test.cpp) and the GPU test (tests/gpu/img2img_test.cpp) load the same runs.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/diffrt.hpp"
#include "base/atomic_file.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace diffrt::test::img2img {

inline std::string fx(const std::string& rel) { return source_path("tests/fixtures/img2img/" + rel); }

// A run's meta.json (Python's json: the DPM configs hold -Infinity).
inline nlohmann::json load_meta(const std::string& run) {
  return parse_scheduler_config_text(read_file_bytes(fx(run + "/meta.json"), 1 << 24), run);
}

// The diffusers folder `dir` converted once per test binary and loaded.
inline std::shared_ptr<const Model> model_of(const std::string& dir) {
  static std::map<std::string, std::shared_ptr<const Model>> cache;
  auto it = cache.find(dir);
  if (it != cache.end()) return it->second;
  ConvertOptions opt;
  opt.input = source_path(dir);
  opt.output = temp_dir("i2i_model") + "/m.drt";
  convert_diffusers(opt);
  return cache.emplace(dir, Model::load(opt.output)).first->second;
}

// "embeds/x.npy[:P]" -> P rows, each repeated B/P times ([p0, p0, p1, p1], encode_prompt's order).
inline std::vector<float> prompt_rows(const std::string& spec, int batch, int* len, int* dim) {
  const size_t br = spec.find("[:");
  const NpyArray a = read_npy(fx(spec.substr(0, br)));
  const int p = std::stoi(spec.substr(br + 2));
  *len = int(a.shape[1]);
  *dim = int(a.shape[2]);
  const std::vector<float> all = a.as_f32();
  const size_t row = size_t(*len) * size_t(*dim);
  std::vector<float> out;
  for (int i = 0; i < p; ++i)
    for (int k = 0; k < batch / p; ++k) out.insert(out.end(), all.begin() + i * row, all.begin() + (i + 1) * row);
  return out;
}

// One SD img2img or inpaint run's request as the pipeline made it (sampler class and Karras flag of its effective
// config, steps, seed with the torch RNG, batch, guidance, eta, strength, prompt embeddings; the binarised mask of an
// inpaint run). `options` points into this object, which therefore neither copies nor moves; the init image is the
// caller's (the tests take it at different stages of preprocessing).
struct SdRun {
  nlohmann::json meta;
  std::vector<float> pos, neg, mask;
  SampleOptions options;

  SdRun(const std::string& run, bool inpaint, const std::string& sampler_override = "") : meta(load_meta(run)) {
    const nlohmann::json& m = meta;
    const nlohmann::json& sc = m.at("effective_scheduler_config");
    const int B = m.at("batch");
    SampleOptions& o = options;
    o.sampler = sampler_override.empty() ? m.at("effective_scheduler_class").get<std::string>() : sampler_override;
    o.karras = sc.contains("use_karras_sigmas") && sc.at("use_karras_sigmas").is_boolean() &&
               sc.at("use_karras_sigmas").get<bool>();
    o.steps = m.at("steps");
    o.seed = m.at("seed");
    o.rng = Rng::Torch;
    o.batch = B;
    o.guidance_scale = m.at("guidance_scale").get<float>();
    if (m.contains("eta") && m.at("eta").is_number()) o.eta = m.at("eta").get<float>();
    o.strength = m.at("strength").get<double>();
    int len = 0, dim = 0;
    pos = prompt_rows(m.at("prompt_rows").at("prompt_embeds"), B, &len, &dim);
    o.prompt_embeds = {pos.data(), B, len, dim};
    if (m.at("do_classifier_free_guidance").get<bool>()) {
      neg = prompt_rows(m.at("prompt_rows").at("negative_prompt_embeds"), B, &len, &dim);
      o.negative_prompt_embeds = {neg.data(), B, len, dim};
    }
    if (inpaint) {
      const NpyArray mc = read_npy(fx(run + "/mask_condition.npy"));  // [m, 1, H, W] binarised
      mask = mc.as_f32();
      o.mask = {mask.data(), int(mc.shape[0]), int(mc.shape[2]), int(mc.shape[3])};
    }
  }
  SdRun(const SdRun&) = delete;
  SdRun& operator=(const SdRun&) = delete;
};

}  // namespace diffrt::test::img2img
