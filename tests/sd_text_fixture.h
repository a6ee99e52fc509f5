// Test helper: the prompt -> image pipeline folder of tests/fixtures/sd/sd1_text, assembled as
// tests/fixtures/make_sd_fixtures.py assembles it: sd1_tiny/pipeline/{scheduler,unet,vae} +
// clip_tiny_<clip>/{text_encoder,tokenizer} + sd1_text/model_index.json. clip is "sd1" (quick_gelu, pad
// <|endoftext|>: the sd1_text runs) or "sd2" (gelu, pad "!": the same UNet with the SD2-style text encoder).
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "base/npy.h"
#include "model/model_file.h"
#include "model/scheduler_config.h"
#include "runtime/latent_pipeline.h"
#include "runtime/sampler.h"
#include "runtime/text_encoder.h"
#include "tests/test_util.h"

namespace diffrt::test {

// The request a tests/fixtures/sd/*/pipelines/*/meta.json run describes (torch RNG, text guidance;
// sizes in latents). Runs without "sampler"/"eta" are DDIM with eta 0; without "batch" the caller
// sets it (prompt runs: the number of prompt embeddings).
inline SampleRequest fixture_request(const nlohmann::json& meta, const ModelFile& mf) {
  const int f = vae_scale_factor(mf);
  SampleRequest req;
  req.sampler = meta.value("sampler", std::string("ddim")) == "ddpm" ? SamplerKind::Ddpm : SamplerKind::Ddim;
  req.steps = meta["steps"].get<int>();
  req.eta = meta.value("eta", 0.0f);
  req.seed = meta["seed"].get<uint64_t>();
  req.rng = RngKind::Torch;
  req.batch = meta.value("batch", 1);
  req.height = meta["height"].get<int>() / f;
  req.width = meta["width"].get<int>() / f;
  req.channels = mf.graph.in_channels;
  req.guidance_scale = meta["guidance_scale"].get<float>();
  req.text_cfg = true;
  return req;
}

// The negative prompts of a prompt run: none, one for all prompts, or one per prompt.
inline std::vector<std::string> fixture_negative_prompts(const nlohmann::json& meta) {
  if (meta["negative_prompt"].is_string()) return {meta["negative_prompt"].get<std::string>()};
  if (meta["negative_prompt"].is_array()) return meta["negative_prompt"].get<std::vector<std::string>>();
  return {};
}

// The run folders under `pipelines` (a fixture's pipelines/ folder), sorted.
inline std::vector<std::filesystem::path> sorted_run_dirs(const std::filesystem::path& pipelines) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& r : std::filesystem::directory_iterator(pipelines)) dirs.push_back(r.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// One recorded embeddings run of tests/fixtures/sd/<model>/pipelines: its folder, meta.json, scheduler,
// request, and the UNet context of its prompt_embeds.npy (and negative_prompt_embeds.npy when guided).
struct PipelineRun {
  std::filesystem::path dir;
  nlohmann::json meta;
  SchedulerConfig sched;
  SampleRequest req;
  std::vector<float> context;
  int len = 0;  // tokens per context row
};

inline std::vector<PipelineRun> pipeline_runs(const std::filesystem::path& pipelines, const ModelFile& mf) {
  std::vector<PipelineRun> runs;
  for (const std::filesystem::path& d : sorted_run_dirs(pipelines)) {
    PipelineRun r;
    r.dir = d;
    r.meta = load_json((d / "meta.json").string());
    r.sched = scheduler_config_from_json(r.meta["effective_scheduler_config"], "meta.json");
    r.req = fixture_request(r.meta, mf);
    TextEmbeds pos = read_text_embeds((d / "prompt_embeds.npy").string()), neg;
    const bool guided = guidance_on(r.req);
    if (guided) neg = read_text_embeds((d / "negative_prompt_embeds.npy").string());
    r.context = model_context(mf.graph, pos, guided ? &neg : nullptr, guided);
    r.len = pos.len;
    runs.push_back(std::move(r));
  }
  return runs;
}

// max |got - want| against the run's .npy `file` (read into *want when given); +inf, and a failure, when the
// sizes differ.
inline double run_max_abs(const PipelineRun& r, const char* file, const std::vector<float>& got,
                          std::vector<float>* want = nullptr) {
  std::vector<float> w = read_npy((r.dir / file).string()).as_f32();
  EXPECT_EQ(got.size(), w.size()) << r.dir << " " << file;
  const double e = got.size() == w.size() ? max_abs_diff(got.data(), w.data(), w.size())
                                          : std::numeric_limits<double>::infinity();
  if (want) *want = std::move(w);
  return e;
}

// A prompt run (tests/fixtures/sd/sd1_text/pipelines/*): its meta.json, whether it is guided, its prompts
// encoded by `encode`, and its request with batch = the number of prompt embeddings.
struct PromptRun {
  nlohmann::json meta;
  bool guided = false;
  PromptEmbeds pe;
  SampleRequest req;
};

inline PromptRun prompt_run(const std::filesystem::path& d, const ModelFile& mf, const TextEncodeFn& encode) {
  PromptRun r;
  r.meta = load_json((d / "meta.json").string());
  r.req = fixture_request(r.meta, mf);
  r.guided = guidance_on(r.req);
  r.pe = encode_prompts(mf, r.meta["prompt"].get<std::vector<std::string>>(), fixture_negative_prompts(r.meta),
                        r.guided, r.meta["num_images_per_prompt"].get<int>(), encode);
  r.req.batch = r.pe.positive.batch;
  return r;
}

inline std::string assemble_text_pipeline(const std::string& clip, const std::string& tag) {
  namespace fs = std::filesystem;
  const fs::path sd = source_path("tests/fixtures/sd");
  const fs::path dst = fs::path(temp_dir(tag)) / "pipeline";
  fs::create_directories(dst);
  for (const char* c : {"scheduler", "unet", "vae"})
    fs::copy(sd / "sd1_tiny" / "pipeline" / c, dst / c, fs::copy_options::recursive);
  for (const char* c : {"text_encoder", "tokenizer"})
    fs::copy(sd / ("clip_tiny_" + clip) / c, dst / c, fs::copy_options::recursive);
  fs::copy_file(sd / "sd1_text" / "model_index.json", dst / "model_index.json");
  return dst.string();
}

}  // namespace diffrt::test
