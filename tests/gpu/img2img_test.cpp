// Image-to-image and inpainting on the CUDA backend through the API (issue 13): Session::sample on Device::Cuda vs
// Device::Cpu and vs diffusers 0.27.2 (tests/fixtures/img2img) for img2img (DDIM, DPM++ 2M Karras, Euler a), the
// 9-channel and the legacy 4-channel inpainting runs and the digits SDEdit run, fp32 with TF32 off
// (deterministic). The torch generator's draws (posterior, noise, step noise) are host-side and identical on both
// backends; the GPU posterior is the fused kernel. Bound: the CPU tests' 2e-5 relative on latents, loosened to 1e-4
// for the GPU's summation orders. Skips without a device; with one, counts its runs so none passes vacuously.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "api/diffrt.hpp"
#include "base/atomic_file.h"
#include "base/layout.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/img2img_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;
using json = nlohmann::json;

namespace {

using namespace test::img2img;

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// (x + 1) / 2 of the preprocessed NCHW image: the API's [0, 1] input.
std::vector<float> image_01(const std::string& path, int* n, int* c, int* h, int* w) {
  const NpyArray pre = read_npy(path);
  *n = int(pre.shape[0]); *c = int(pre.shape[1]); *h = int(pre.shape[2]); *w = int(pre.shape[3]);
  std::vector<float> x = nchw_to_nhwc(pre.as_f32(), *n, *c, *h, *w);
  for (float& v : x) v = (v + 1.0f) * 0.5f;
  return x;
}

void run_both(const std::string& run, bool inpaint) {
  SCOPED_TRACE(run);
  SdRun r(run, inpaint);
  auto model = model_of(r.meta.at("model"));
  SessionOptions gpu_opt;
  gpu_opt.device = Device::Cuda;
  gpu_opt.deterministic = true;
  Session cpu(model), gpu(model, gpu_opt);
  SampleOptions& o = r.options;
  int n = 0, c = 0, h = 0, w = 0;
  const std::vector<float> image = image_01(fx(run + (inpaint ? "/init_image.npy" : "/preprocessed.npy")), &n, &c, &h, &w);
  o.init_image = {image.data(), n, h, w, c};
  o.output = Output::Latents;
  const std::vector<float> a = cpu.sample(o), g = gpu.sample(o);
  const std::vector<float> want = read_npy(fx(run + "/latents.npy")).as_f32();
  ASSERT_EQ(g.size(), want.size());
  const double scale = std::max(1.0, max_abs(want));
  const double d_cpu = test::max_abs_diff(g.data(), a.data(), a.size()), d_ref = test::max_abs_diff(g.data(), want.data(), want.size());
  EXPECT_LE(d_cpu, 1e-4 * scale) << "GPU vs CPU";
  EXPECT_LE(d_ref, 1e-4 * scale) << "GPU vs diffusers";
  std::printf("[gpu img2img] %-52s GPU-CPU %.2e, GPU-diffusers %.2e (max |x| %.1f)\n", run.c_str(), d_cpu, d_ref, scale);
}

}  // namespace

TEST(GpuImg2Img, LatentRunsMatchCpuAndDiffusers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const char* runs[] = {"img2img/sd1/ddim_s0.6_g7.5_b1", "img2img/sd1/dpmkarras_s0.6_g7.5_b1_pil",
                        "img2img/sd1/eulera_s0.3_g1_p2_perprompt", "img2img/sd2/ddim_eta0.5_s0.6_g7.5_p2_perprompt"};
  int n = 0;
  for (const char* r : runs) {
    run_both(r, false);
    ++n;
  }
  for (const char* r : {"inpaint/unet9_ddim_s0.6_g1_p2_pil_pilmask", "inpaint/unet9_eulera_s1.0_g7.5_b1_mask20_defaulthw",
                        "inpaint/unet4_eulera_s0.6_g7.5_b1_mask20", "inpaint/unet4_dpmkarras_s1.0_g1_b1_pilmask24"}) {
    run_both(r, true);
    ++n;
  }
  EXPECT_EQ(n, 8);
}

TEST(GpuImg2Img, PixelSdEditMatchesCpu) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const std::string run = "sdedit/digits_ddim20_eta0_s0.6_label0";
  const json m = load_meta(run);
  auto model = model_of(m.at("model"));
  SessionOptions gpu_opt;
  gpu_opt.device = Device::Cuda;
  gpu_opt.deterministic = true;
  Session cpu(model), gpu(model, gpu_opt);
  const NpyArray a = read_npy(fx(run + "/image.npy"));
  const std::vector<float> image = a.as_f32();
  SampleOptions o;
  o.sampler = "ddim";
  o.steps = m.at("steps");
  o.seed = m.at("seed");
  o.rng = Rng::Torch;
  o.batch = m.at("batch");
  o.class_labels = m.at("class_labels").get<std::vector<int32_t>>();
  o.strength = m.at("strength").get<double>();
  o.init_image = {image.data(), int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(a.shape[3])};
  const std::vector<float> c = cpu.sample(o), g = gpu.sample(o);
  const std::vector<float> want = read_npy(fx(run + "/images.npy")).as_f32();
  ASSERT_EQ(g.size(), want.size());
  EXPECT_LE(test::max_abs_diff(g.data(), c.data(), c.size()), 1e-4);
  EXPECT_LE(test::max_abs_diff(g.data(), want.data(), want.size()), 1e-4);
  // Philox: the same images on both backends (the posterior and sampler noise are counter-based on either).
  o.rng = Rng::Philox;
  const std::vector<float> pc = cpu.sample(o), pg = gpu.sample(o);
  EXPECT_LE(test::max_abs_diff(pg.data(), pc.data(), pc.size()), 1e-4);
}
