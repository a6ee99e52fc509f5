// Every sampler through the whole CPU path against StableDiffusionPipeline runs of diffusers 0.27.2
// (tests/fixtures/samplers "pipelines": sd1_tiny (epsilon, PNDM file) and sd2_tiny (v-prediction, DDIM file) with
// PNDM, DPM++ 2M (Karras, SDE Karras), Euler, Euler a, Heun, UniPC and LCM swapped in as
// X.from_config(pipe.scheduler.config, **overrides)). The sampler is selected by name exactly as `--sampler NAME
// [--karras]` does (select_sampler on the converted model's own scheduler config), runs with the torch RNG from the
// seed (no injected noise), the real converted UNet on the CPU executor and the VAE decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>

#include "api/diffrt.hpp"
#include "base/layout.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "runtime/latent_pipeline.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;
using json = nlohmann::json;

namespace {

std::string src(const std::string& rel) { return test::source_path(rel); }

const json& manifest() {
  static const json m = [] {
    std::ifstream f(src("tests/fixtures/samplers/manifest.json"));
    return json::parse(f);
  }();
  return m;
}

const ModelFile& converted(const std::string& pipeline_dir) {
  return test::converted_once(pipeline_dir, [&] { return test::convert_options(src(pipeline_dir), "sampler_pipe"); }).file;
}

// The fixture's scheduler key -> (--sampler NAME, --karras).
std::pair<std::string, bool> sampler_of(const std::string& key) {
  if (key == "dpmpp2m") return {"dpmpp-2m", false};
  if (key == "dpmpp2m_karras") return {"dpmpp-2m", true};
  if (key == "dpmpp2m_sde_karras") return {"dpmpp-2m-sde", true};
  if (key == "euler_a") return {"euler-a", false};
  return {key, false};  // pndm, euler, heun, unipc, lcm
}

}  // namespace

TEST(SamplerPipelines, MatchStableDiffusionPipeline) {
  int runs = 0;
  for (const json& e : manifest().at("pipelines")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const ModelFile& mf = converted(e.at("pipeline"));
    CpuWeights weights(mf);
    // --sampler NAME [--karras] on the model's own scheduler config.
    const SchedulerConfig model_cfg = scheduler_config_from_json(mf.scheduler, "model scheduler");
    const auto [sampler, karras] = sampler_of(e.at("scheduler"));
    const SchedulerConfig cfg = select_sampler(model_cfg, sampler, karras, name);
    {
      const json& ce = manifest().at("configs").at(e.at("config_id").get<std::string>());
      EXPECT_EQ(std::string(scheduler_class_name(cfg.klass)), ce.at("class").get<std::string>());
      const json ours = scheduler_config_to_json(cfg);
      for (auto it = ce.at("config").begin(); it != ce.at("config").end(); ++it)
        if (it.key()[0] != '_') {
          EXPECT_EQ(ours.value(it.key(), json()), it.value()) << "config key " << it.key();
        }
    }
    const int B = e.at("batch");
    const bool cfg_on = e.at("do_cfg");
    const TextEmbeds pos = read_text_embeds(src(e.at("prompt_embeds")));
    ASSERT_EQ(pos.batch, B);
    TextEmbeds neg;
    if (cfg_on) neg = read_text_embeds(src(e.at("negative_prompt_embeds")));
    const std::vector<float> context = model_context(mf.graph, pos, cfg_on ? &neg : nullptr, cfg_on);
    SampleRequest r;
    r.sampler = cfg.klass;
    r.steps = e.at("steps");
    r.seed = e.at("seed");
    r.rng = RngKind::Torch;
    r.batch = B;
    r.channels = 4;
    r.height = r.width = 8;
    r.text_cfg = true;
    r.guidance_scale = e.at("guidance_scale").get<float>();
    int reported = 0, total = 0;
    std::vector<float> lat = sample_latents_cpu(mf, weights, cfg, r, context, pos.len, [&](int step, int t) {
      reported = step;
      total = t;
      return true;
    });
    EXPECT_EQ(total, int(e.at("steps")));
    EXPECT_EQ(reported, total);
    const std::vector<float> got = nhwc_to_nchw(lat, B, 8, 8, 4);
    const std::vector<float> want = read_npy(src("tests/fixtures/samplers/" + e.at("latents").get<std::string>())).as_f32();
    ASSERT_EQ(got.size(), want.size());
    double mx = 0;
    for (float v : want) mx = std::max(mx, double(std::fabs(v)));
    const double d = test::max_abs_diff(got.data(), want.data(), want.size());
    // Real UNet kernels and torch.randn reproduced to ~1 ulp: a tolerance relative to the latents' magnitude.
    EXPECT_LE(d, 2e-5 * std::max(1.0, mx)) << "max |latent diff| " << d << ", max |latent| " << mx;
    const std::vector<float> img = to_image_01(decode_latents_cpu(mf, weights, lat, B, 8, 8));
    const std::vector<float> want_img =
        read_npy(src("tests/fixtures/samplers/" + e.at("images").get<std::string>())).as_f32();
    ASSERT_EQ(img.size(), want_img.size());
    const double di = test::max_abs_diff(img.data(), want_img.data(), img.size());
    EXPECT_LE(di, 1e-5) << "max |image diff|";
    std::printf("[pipelines] %-40s latents max |diff| %.2e (max |x| %.1f), images %.2e\n", name.c_str(), d, mx, di);
    ++runs;
  }
  EXPECT_EQ(runs, 18);
}

// The same runs through the C++ API as `diffrt sample --sampler NAME [--karras] --rng torch` sends them
// (SampleOptions::sampler / karras, resolved by api/request.cpp's request_scheduler): the images must match
// StableDiffusionPipeline's as tightly as the direct path above.
TEST(SamplerPipelines, ThroughTheApiByName) {
  int runs = 0;
  for (const json& e : manifest().at("pipelines")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const std::string pipeline = e.at("pipeline");
    const std::string path =
        test::converted_once(pipeline, [&] { return test::convert_options(src(pipeline), "sampler_pipe"); }).path;
    Session s(Model::load(path));
    const TextEmbeds pos = read_text_embeds(src(e.at("prompt_embeds")));
    const bool cfg_on = e.at("do_cfg");
    TextEmbeds neg;
    if (cfg_on) neg = read_text_embeds(src(e.at("negative_prompt_embeds")));
    SampleOptions o;
    std::tie(o.sampler, o.karras) = sampler_of(e.at("scheduler"));
    o.steps = e.at("steps");
    o.seed = e.at("seed");
    o.rng = Rng::Torch;
    o.height = o.width = 16;  // pixels: 8x8 latents
    o.guidance_scale = e.at("guidance_scale").get<float>();
    o.prompt_embeds = {pos.data.data(), pos.batch, pos.len, pos.dim};
    if (cfg_on) o.negative_prompt_embeds = {neg.data.data(), neg.batch, neg.len, neg.dim};
    o.batch = pos.batch;
    const SampleDescription d = s.describe(o);
    EXPECT_EQ(d.steps, int(e.at("steps")));
    const std::vector<float> img = s.sample(o);
    const std::vector<float> want =
        read_npy(src("tests/fixtures/samplers/" + e.at("images").get<std::string>())).as_f32();
    ASSERT_EQ(img.size(), want.size());
    const double di = test::max_abs_diff(img.data(), want.data(), want.size());
    EXPECT_LE(di, 1e-5) << "max |image diff| (" << d.scheduler << ")";
    std::printf("[api pipelines] %-40s %-26s images %.2e\n", name.c_str(), d.sampler.c_str(), di);
    ++runs;
  }
  EXPECT_EQ(runs, 18);
}
