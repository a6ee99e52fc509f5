// Stable-Diffusion-style parity on the CPU backend against diffusers 0.27.2 fixtures
// (tests/fixtures/sd/{sd1_tiny,sd2_tiny}, made by tests/fixtures/make_sd_fixtures.py from random
// weights): UNet2DConditionModel forward, AutoencoderKL decode, and whole
// StableDiffusionPipeline runs (prompt embeddings given, --rng torch semantics, with and without
// guidance, DDIM and DDPM, epsilon and v-prediction).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <cmath>
#include <map>

#include "runtime/latent_pipeline.h"
#include "base/layout.h"
#include "base/npy.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

const char* kModels[] = {"sd1_tiny", "sd2_tiny"};

fs::path fixture(const std::string& model) { return test::source_path("tests/fixtures/sd/" + model); }

// One conversion per fixture model per test binary.
const ModelFile& converted(const std::string& model) {
  return test::converted_once(model, [&] { return test::convert_options((fixture(model) / "pipeline").string(), "sd_" + model); })
      .file;
}

std::vector<float> npy_f32(const fs::path& p) { return read_npy(p.string()).as_f32(); }

}  // namespace

TEST(SdParity, ConvertedFileHasUnetAndVae) {
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    EXPECT_EQ(mf.family, "unet2d_condition") << m;
    EXPECT_GE(mf.graph.context, 0) << m;
    EXPECT_TRUE(mf.vae.present()) << m;
    EXPECT_FLOAT_EQ(float(mf.vae.scaling_factor), 0.18215f) << m;
    EXPECT_EQ(vae_scale_factor(mf), 2) << m;
  }
}

TEST(SdParity, UNetForwardMatchesDiffusers) {
  int cases = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    CpuWeights weights(mf);
    for (const char* c : {"unet_case0", "unet_case1"}) {
      const fs::path d = fixture(m) / c;
      NpyArray x = read_npy((d / "sample.npy").string());
      NpyArray e = read_npy((d / "encoder_hidden_states.npy").string());
      const int n = int(x.shape[0]), ch = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
      const int len = int(e.shape[1]);
      std::vector<float> xs = nchw_to_nhwc(x.as_f32(), n, ch, h, w), ts = npy_f32(d / "timesteps.npy");
      std::vector<float> ctx = e.as_f32();
      CpuExecutor ex(mf, weights, mf.graph, PlanInputs{n, h, w, len});
      std::vector<float> out(size_t(n) * h * w * mf.graph.out_channels);
      GraphInputs in;
      in.sample = xs.data(); in.timesteps = ts.data(); in.context = ctx.data();
      ex.run(in, out.data());
      std::vector<float> got = nhwc_to_nchw(out, n, h, w, mf.graph.out_channels);
      std::vector<float> want = npy_f32(d / "out.npy");
      ASSERT_EQ(got.size(), want.size());
      const double rel = test::rel_l2(got.data(), want.data(), want.size());
      const double mx = test::max_abs_diff(got.data(), want.data(), want.size());
      std::printf("[sd unet] %-9s %s  L=%-3d rel_l2 %.3g  max_abs %.3g\n", m, c, len, rel, mx);
      EXPECT_LE(rel, 1e-5) << m << "/" << c;
      ++cases;
    }
  }
  EXPECT_EQ(cases, 4);
}

TEST(SdParity, VaeDecodeMatchesDiffusers) {
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    CpuWeights weights(mf);
    const fs::path d = fixture(m) / "vae_decode";
    NpyArray z = read_npy((d / "latents.npy").string());
    const int n = int(z.shape[0]), c = int(z.shape[1]), h = int(z.shape[2]), w = int(z.shape[3]);
    std::vector<float> raw = decode_latents_cpu(mf, weights, nchw_to_nhwc(z.as_f32(), n, c, h, w), n, h, w);
    const int f = vae_scale_factor(mf);
    std::vector<float> raw_nchw = nhwc_to_nchw(raw, n, f * h, f * w, 3);
    std::vector<float> want_raw = npy_f32(d / "raw.npy"), want_img = npy_f32(d / "image.npy");
    ASSERT_EQ(raw_nchw.size(), want_raw.size());
    const double rel = test::rel_l2(raw_nchw.data(), want_raw.data(), want_raw.size());
    std::vector<float> img = to_image_01(raw);
    const double mx = test::max_abs_diff(img.data(), want_img.data(), want_img.size());
    std::printf("[sd vae]  %-9s rel_l2 %.3g  image max_abs %.3g\n", m, rel, mx);
    EXPECT_LE(rel, 1e-5) << m;
    EXPECT_LE(mx, 1e-5) << m;
  }
}

TEST(SdParity, PipelinesMatchStableDiffusionPipeline) {
  int runs = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    CpuWeights weights(mf);
    for (const test::PipelineRun& r : test::pipeline_runs(fixture(m) / "pipelines", mf)) {
      const SampleRequest& req = r.req;
      std::vector<float> lat = sample_latents_cpu(mf, weights, r.sched, req, r.context, r.len, {});
      std::vector<float> want_lat;
      const double lat_err =
          test::run_max_abs(r, "latents.npy", nhwc_to_nchw(lat, req.batch, req.height, req.width, req.channels), &want_lat);
      std::vector<float> img = to_image_01(decode_latents_cpu(mf, weights, lat, req.batch, req.height, req.width));
      const double err = test::run_max_abs(r, "images.npy", img);
      std::printf("[sd pipe] %-9s %-18s latents max_abs %.3g  images max_abs %.3g\n", m, r.dir.filename().c_str(),
                  lat_err, err);
      // Issue bounds are 1e-3 (DDIM) / 5e-3 (DDPM); fp32 on the CPU lands near 1e-6, so hold it to that
      // order. Latents grow large with random eps-prediction weights (std ~10): bound them relatively.
      double lat_max = 0;
      for (float v : want_lat) lat_max = std::max(lat_max, double(std::fabs(v)));
      EXPECT_LE(err, 2e-5) << r.dir;
      EXPECT_LE(lat_err / lat_max, 1e-5) << r.dir;
      ++runs;
    }
  }
  EXPECT_GE(runs, 6);
}
