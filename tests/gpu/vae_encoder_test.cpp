// The VAE encoder on the CUDA backend (issue 13, part 1):
//   * the posterior kernel (kernels/vae_posterior) vs its CPU reference: odd shapes, fp32/fp16/bf16 moments, the
//     three noise modes (mean: bit for bit; host-given torch noise and in-kernel Philox noise: nmse <= 1e-12, the
//     only difference being an ulp of expf), the logvar clamp at both ends, NaN passed through, guard bytes and a
//     poisoned output;
//   * the encoder graph: GPU fp32 vs the CPU executor (rel L2 <= 1e-5, TF32 off) and vs diffusers' moments
//     (tests/fixtures/img2img/vae_encode, even and odd sizes); fp16 / bf16 models vs the CPU fp32 model within the
//     whole-model bounds of tests/gpu/sd_test.cpp (1e-2 / 3e-2);
//   * encode_latents_cuda (the fused device path): torch-RNG samples vs diffusers' sample, Philox samples vs the
//     CPU posterior on the same seed (the noise bits are identical), the mean;
//   * Session::encode on Device::Cuda vs Device::Cpu through the API;
//   * an fp16 overflow is Error(Unsupported), never Inf latents.
// Every test skips without a device; with one, each counts its cases so none passes vacuously.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "base/layout.h"
#include "base/npy.h"
#include "kernels/vae_posterior/vae_posterior.h"
#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/cuda/cuda_latent.h"
#include "runtime/rng.h"
#include "runtime/vae_encode.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

const char* kCases[] = {"sd1_b2_16x16", "sd1_b1_24x40", "sd1_b1_17x15", "sd2_b2_16x16", "sd2_b1_18x10"};

using Converted = test::ConvertedModel;

const Converted& converted(const std::string& model, DType dtype = DType::F32) {
  return test::converted_once(model + "/" + dtype_name(dtype), [&] {
    ConvertOptions opt = test::convert_options(test::source_path("tests/fixtures/sd/" + model + "/pipeline"),
                                               "cuda_venc_" + model);
    opt.dtype = dtype;
    opt.vae_dtype = dtype;  // the encoder itself in each dtype (the converter's default keeps an fp16 model's VAE fp32)
    return opt;
  });
}

struct Case {
  std::string model;
  int n = 0, h = 0, w = 0, lh = 0, lw = 0;
  std::vector<float> x;                 // NHWC images
  std::vector<float> moments, sample;   // NCHW (diffusers)
  uint64_t seed = 0;
};

Case load_case(const std::string& name) {
  const fs::path d = test::source_path("tests/fixtures/img2img/vae_encode/" + name);
  Case c;
  c.model = name.substr(0, 3) + "_tiny";
  NpyArray x = read_npy((d / "x.npy").string());
  c.n = int(x.shape[0]); c.h = int(x.shape[2]); c.w = int(x.shape[3]);
  c.x = nchw_to_nhwc(x.as_f32(), c.n, 3, c.h, c.w);
  NpyArray m = read_npy((d / "moments.npy").string());
  c.lh = int(m.shape[2]); c.lw = int(m.shape[3]);
  c.moments = m.as_f32();
  c.sample = read_npy((d / "sample.npy").string()).as_f32();
  std::ifstream f(d / "meta.json");
  c.seed = nlohmann::json::parse(f)["seed"].get<uint64_t>();
  return c;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return a.size() == b.size() ? test::rel_l2(a.data(), b.data(), b.size()) : INFINITY;
}

}  // namespace

TEST(VaePosteriorCuda, MatchesTheCpuReference) {
  DIFFRT_SKIP_WITHOUT_GPU();
  struct Shape { int n, h, w, c; };
  const Shape shapes[] = {{1, 8, 8, 4}, {3, 5, 7, 4}, {2, 1, 1, 3}, {1, 64, 64, 4}, {2, 9, 5, 16}, {1, 3, 3, 1}};
  int cases = 0;
  for (const Shape& s : shapes)
    for (DType dt : test::kAllDtypes)
      for (PosteriorNoise noise : {PosteriorNoise::None, PosteriorNoise::Given, PosteriorNoise::Philox}) {
        const size_t px = size_t(s.n) * s.h * s.w;
        std::vector<float> m = test::random_normal(px * 2 * s.c, 1000 + cases);
        // Logvars across the clamp: some below -30 and above 20.
        for (size_t p = 0; p < px; ++p)
          for (int c = 0; c < s.c; ++c) {
            float& lv = m[p * 2 * s.c + s.c + c];
            if ((p + c) % 11 == 3) lv = -40.0f;
            if ((p + c) % 13 == 5) lv = 25.0f;
          }
        test::DevTensor dm = test::upload_rounded(m, dt, 1);  // m now holds the dtype's values
        std::vector<float> eps = test::random_normal(px * s.c, 2000 + cases);
        test::DevTensor de(eps.size(), DType::F32);
        de.upload(eps);
        test::DevTensor dout(px * s.c, DType::F32, 3);
        dout.poison();
        VaePosteriorParams p;
        p.moments = dm.ptr(); p.dtype = dt; p.eps = noise == PosteriorNoise::Given ? static_cast<const float*>(de.ptr()) : nullptr;
        p.out = static_cast<float*>(dout.ptr());
        p.n = s.n; p.h = s.h; p.w = s.w; p.c = s.c;
        p.scale = 0.18215f;
        p.noise = noise;
        p.seed = 0x123456789abcull; p.sample_base = 5; p.stream = 1;
        vae_posterior_cuda(p, nullptr);
        std::vector<float> ref(px * s.c);
        VaePosteriorParams r = p;
        r.moments = m.data(); r.dtype = DType::F32; r.eps = noise == PosteriorNoise::Given ? eps.data() : nullptr;
        r.out = ref.data();
        vae_posterior_ref(r);
        const std::string what = std::to_string(s.n) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                                 std::to_string(s.c) + " " + dtype_name(dt) + " noise " + std::to_string(int(noise));
        test::expect_output_ok(dout, ref, what, noise == PosteriorNoise::None ? 1e-30 : 1e-12);
        if (noise == PosteriorNoise::None) {
          EXPECT_EQ(dout.download(), ref) << what << ": the mean must be bit-exact";
        }
        ++cases;
      }
  EXPECT_EQ(cases, 6 * 3 * 3);
  // NaN moments pass through (diffusers' clamp keeps NaN): never replaced by a finite value.
  std::vector<float> m = {std::nanf(""), 0.0f, 1.0f, std::nanf("")};
  test::DevTensor dm(4, DType::F32);
  dm.upload(m);
  test::DevTensor dout(2, DType::F32);
  VaePosteriorParams p;
  p.moments = dm.ptr(); p.out = static_cast<float*>(dout.ptr());
  p.n = 1; p.h = 1; p.w = 2; p.c = 1;  // pixel 0: mean NaN; pixel 1: logvar NaN
  p.noise = PosteriorNoise::Philox;
  vae_posterior_cuda(p, nullptr);
  const std::vector<float> got = dout.download();
  EXPECT_TRUE(std::isnan(got[0]) && std::isnan(got[1])) << got[0] << " " << got[1];
}

// Runs f(name, case, fp32 model, its CUDA weights, a CPU executor of its encoder at the case's size) for each of
// the five kCases, and checks that all five ran.
namespace {
template <class F>
void for_each_case(F&& f) {
  int cases = 0;
  for (const char* name : kCases) {
    const Case c = load_case(name);
    const ModelFile& mf = converted(c.model).file;
    CudaWeights w(mf);
    CpuWeights cw(mf);
    CpuExecutor ex(mf, cw, mf.vae_encoder.graph, PlanInputs{c.n, c.h, c.w, 0});
    f(name, c, mf, w, ex);
    ++cases;
  }
  EXPECT_EQ(cases, 5);
}
}  // namespace

TEST(VaeEncoderCuda, MomentsMatchCpuAndDiffusers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for_each_case([&](const char* name, const Case& c, const ModelFile& mf, CudaWeights& w, CpuExecutor& ex) {
    const EncodedLatents got = encode_moments_cuda(mf, w, ctx, c.x, c.n, c.h, c.w);
    EXPECT_EQ(got.h, c.lh);
    EXPECT_EQ(got.w, c.lw);
    const std::vector<float> ref = encode_moments_cpu(ex, c.x.data());
    const double r_cpu = rel(got.data, ref);
    const double r_d = rel(nhwc_to_nchw(got.data, c.n, c.lh, c.lw, 8), c.moments);
    double r16 = 0, rb16 = 0;
    for (DType dt : {DType::F16, DType::BF16}) {
      const ModelFile& mh = converted(c.model, dt).file;
      CudaWeights wh(mh);
      const double r = rel(encode_moments_cuda(mh, wh, ctx, c.x, c.n, c.h, c.w).data, ref);
      (dt == DType::F16 ? r16 : rb16) = r;
    }
    std::printf("[cuda vae encoder] %-14s fp32 vs cpu %.3g  vs diffusers %.3g  fp16 %.3g  bf16 %.3g\n", name, r_cpu, r_d,
                r16, rb16);
    EXPECT_LE(r_cpu, 1e-5) << name;
    EXPECT_LE(r_d, 2e-5) << name;
    EXPECT_LE(r16, 1e-2) << name;
    EXPECT_LE(rb16, 3e-2) << name;
  });
}

TEST(VaeEncoderCuda, FusedPosteriorMatchesDiffusersAndTheCpuPath) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for_each_case([&](const char* name, const Case& c, const ModelFile& mf, CudaWeights& w, CpuExecutor& ex) {
    const std::vector<float> cpu_moments = encode_moments_cpu(ex, c.x.data());
    // torch RNG, unscaled: latent_dist.sample(generator).
    TorchGenerator g(c.seed);
    PosteriorOptions o;
    o.rng = RngKind::Torch;
    o.generator = &g;
    o.scaled = false;
    const EncodedLatents z = encode_latents_cuda(mf, w, ctx, c.x, c.n, c.h, c.w, o);
    const double r_torch = rel(nhwc_to_nchw(z.data, z.n, z.h, z.w, z.c), c.sample);
    // Philox, scaled: the same noise bits as the CPU posterior on the CPU moments.
    PosteriorOptions op;
    op.seed = 99;
    op.first_sample_index = 3;
    op.stream = 1;
    const double r_philox = rel(encode_latents_cuda(mf, w, ctx, c.x, c.n, c.h, c.w, op).data,
                                posterior_cpu(mf, cpu_moments, c.n, c.lh, c.lw, op).data);
    PosteriorOptions om;
    om.sample = false;
    const double r_mean = rel(encode_latents_cuda(mf, w, ctx, c.x, c.n, c.h, c.w, om).data,
                              posterior_cpu(mf, cpu_moments, c.n, c.lh, c.lw, om).data);
    std::printf("[cuda vae posterior] %-14s torch vs diffusers %.3g  philox vs cpu %.3g  mean vs cpu %.3g\n", name,
                r_torch, r_philox, r_mean);
    EXPECT_LE(r_torch, 2e-5) << name;
    EXPECT_LE(r_philox, 1e-5) << name;
    EXPECT_LE(r_mean, 1e-5) << name;
  });
}

TEST(VaeEncoderCuda, SessionEncodeOnCudaMatchesCpu) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int cases = 0;
  for (const char* name : {"sd1_b2_16x16", "sd2_b1_18x10"}) {
    const Case c = load_case(name);
    auto model = Model::load(converted(c.model).path);
    Session cpu(model, {Device::Cpu});
    Session gpu(model, {Device::Cuda});
    for (Rng rng : {Rng::Torch, Rng::Philox}) {
      EncodeOptions o;
      o.rng = rng;
      o.seed = c.seed;
      const double r = rel(gpu.encode(c.x.data(), c.n, c.h, c.w, o), cpu.encode(c.x.data(), c.n, c.h, c.w, o));
      std::printf("[cuda session encode] %-14s %s rel_l2 %.3g\n", name, rng == Rng::Torch ? "torch " : "philox", r);
      EXPECT_LE(r, 1e-5) << name;
      ++cases;
    }
    EXPECT_LE(rel(gpu.encode_moments(c.x.data(), c.n, c.h, c.w), c.moments), 2e-5) << name;
  }
  EXPECT_EQ(cases, 4);
}

TEST(VaeEncoderCuda, Fp16OverflowIsAnErrorNotInf) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const Case c = load_case("sd1_b1_24x40");
  const ModelFile& mf = converted("sd1_tiny", DType::F16).file;
  CudaWeights w(mf);
  EXPECT_EQ(test::count_nonfinite(encode_moments_cuda(mf, w, ctx, c.x, c.n, c.h, c.w).data), 0u);
  std::vector<float> huge = c.x;  // out of the API's [-1, 1]: only the engine level takes it
  for (float& v : huge) v *= 1e6f;
  for (int mode = 0; mode < 2; ++mode) {
    try {
      if (mode == 0) encode_moments_cuda(mf, w, ctx, huge, c.n, c.h, c.w);
      else encode_latents_cuda(mf, w, ctx, huge, c.n, c.h, c.w, PosteriorOptions{});
      ADD_FAILURE() << "no error on an fp16 overflow (mode " << mode << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
    }
  }
}
