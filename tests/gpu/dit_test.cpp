// DiT on the CUDA backend (skipped without a GPU; every test counts the cases it ran, so none can pass empty on a
// GPU machine):
//   * kernels vs their CPU references (gpu_test_util.h method: rounded inputs, poisoned outputs, guard bytes,
//     nmse per dtype): patch_embed (DiT-XL/2 256/512 shapes, patch 1/2/3/8, odd Cin and D, non-square grids),
//     unpatchify (a permutation: bit-exact), adaLN layer_norm (DiT-XL/2's D = 1152 in the fused 195840-wide
//     modulation vector, tiny and misaligned slices, affine), gated linear (attention out / fc2 shapes, odd N and
//     gate offsets: the scalar epilogue path);
//   * whole models (the converted fixtures): GPU fp32 vs the CPU executor rel L2 <= 1e-5 and vs diffusers' out.npy;
//     fp16 <= 1e-2, bf16 <= 3e-2 rel L2 vs the CPU fp32 output (the SD UNet bounds; on failure compare mode names
//     the first diverging node); a DDIM DiTPipeline run with the CUDA executor as the sampler's model vs
//     diffusers' latents and images.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "base/layout.h"
#include "base/npy.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/unpatchify/unpatchify.h"
#include "model/scheduler_config.h"
#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/latent_pipeline.h"
#include "runtime/sampler.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;

namespace diffrt::test {
namespace {

// ---- kernels ---------------------------------------------------------------------------------------------

struct PeCase {
  int n, h, w, cin, dim, p;
  bool pos;
  int base;
  float interp;
};

void run_patch_embed(const PeCase& s, DType t) {
  const int gh = s.h / s.p, gw = s.w / s.p, K = s.p * s.p * s.cin;
  const uint32_t seed = uint32_t(s.n * 131 + s.h * 17 + s.w * 5 + s.dim + s.p);
  std::vector<float> x = random_normal(size_t(s.n) * s.h * s.w * s.cin, seed);
  std::vector<float> w = random_normal(size_t(s.dim) * K, seed + 1, 0.0f, 1.0f / std::sqrt(float(K)));
  std::vector<float> b = random_normal(size_t(s.dim), seed + 2, 0.0f, 0.1f);
  DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), db = upload_rounded(b, t);
  DevTensor dy(size_t(s.n) * gh * gw * s.dim, t);
  dy.poison();
  PatchEmbedParams p;
  p.x = dx.ptr(); p.w = dw.ptr(); p.bias = db.ptr(); p.y = dy.ptr();
  p.n = s.n; p.h = s.h; p.w_in = s.w; p.cin = s.cin; p.dim = s.dim; p.patch = s.p;
  p.pos_embed = s.pos; p.base_size = s.base; p.interpolation_scale = s.interp; p.dtype = t;
  patch_embed_cuda(p, nullptr);
  std::vector<float> ref(dy.count());
  PatchEmbedParams r = p;
  r.x = x.data(); r.w = w.data(); r.bias = b.data(); r.y = ref.data(); r.dtype = DType::F32;
  patch_embed_ref(r);
  expect_output_ok(dy, ref, "patch_embed n=" + std::to_string(s.n) + " " + std::to_string(s.h) + "x" +
                                std::to_string(s.w) + "x" + std::to_string(s.cin) + " p=" + std::to_string(s.p) +
                                " D=" + std::to_string(s.dim) + (s.pos ? " +pos" : "") + " " + dtype_name(t));
}

// Names with "RealModel" hold the DiT-XL/2 shapes; scripts/gpu_pass.sh keeps them out of compute-sanitizer runs.
TEST(DiTKernelsGpu, PatchEmbedRealModelShapes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const PeCase cases[] = {
      {2, 32, 32, 4, 1152, 2, true, 16, 1.0f},   // DiT-XL/2 256, batch 1 with CFG
      {2, 64, 64, 4, 1152, 2, true, 32, 1.0f},   // DiT-XL/2 512
      {16, 32, 32, 4, 1152, 2, true, 16, 1.0f},  // a larger batch (the kernel loops over samples)
  };
  int ran = 0;
  for (const PeCase& s : cases)
    for (DType t : kAllDtypes) {
      run_patch_embed(s, t);
      ++ran;
    }
  EXPECT_EQ(ran, 9);
}

TEST(DiTKernelsGpu, PatchEmbed) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const PeCase cases[] = {
      {3, 8, 8, 4, 24, 2, true, 4, 1.0f},        // the fixtures' D = 24 (< one 128-channel block)
      {1, 8, 12, 4, 24, 2, true, 4, 1.0f},       // non-square grid, table recomputed
      {2, 9, 6, 3, 36, 3, true, 2, 1.5f},        // patch 3, odd Cin, interpolation 1.5
      {1, 8, 8, 4, 16, 1, true, 8, 0.75f},       // patch 1
      {1, 128, 128, 4, 24, 8, true, 16, 2.0f},   // patch 8 (K = 256: one full shared-memory chunk)
      {1, 16, 16, 70, 12, 4, false, 4, 1.0f},    // K = 1120 spans several chunks; no table
      {1, 4, 4, 5, 131, 2, true, 2, 1.0f},       // D not a multiple of 4 is refused with a table: no table here
  };
  int ran = 0;
  for (const PeCase& s : cases) {
    PeCase c = s;
    if (c.dim % 4) c.pos = false;
    for (DType t : kAllDtypes) {
      run_patch_embed(c, t);
      ++ran;
    }
  }
  EXPECT_EQ(ran, 21);
}

TEST(DiTKernelsGpu, UnpatchifyIsAnExactPermutation) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int ran = 0;
  for (auto [n, gh, gw, p, c] : {std::array<int, 5>{2, 16, 16, 2, 8}, {64, 16, 16, 2, 8}, {2, 32, 32, 2, 8},
                                 {1, 4, 6, 2, 8}, {2, 3, 5, 4, 3}, {1, 8, 8, 1, 8}}) {
    for (DType t : kAllDtypes) {
      std::vector<float> x = random_normal(size_t(n) * gh * gw * p * p * c, uint32_t(n + gh + gw + p + c));
      DevTensor dx = upload_rounded(x, t), dy(x.size(), t);
      dy.poison();
      UnpatchifyParams q;
      q.x = dx.ptr(); q.y = dy.ptr(); q.n = n; q.gh = gh; q.gw = gw; q.patch = p; q.c = c; q.dtype = t;
      unpatchify_cuda(q, nullptr);
      std::vector<float> ref(x.size());
      UnpatchifyParams r = q;
      r.x = x.data(); r.y = ref.data(); r.dtype = DType::F32;
      unpatchify_ref(r);
      expect_output_ok(dy, ref, "unpatchify " + std::to_string(gh) + "x" + std::to_string(gw) + " p" + std::to_string(p),
                       1e-30);
      ++ran;
    }
  }
  EXPECT_EQ(ran, 18);
}

struct AdaLnCase {
  int n, tokens, c;
  long long mod_ld, shift, scale;
  bool affine;
};

void run_ada_ln(const AdaLnCase& s, DType t) {
  const long long rows = (long long)s.n * s.tokens;
  const size_t count = size_t(rows) * s.c;
  const uint32_t seed = uint32_t(rows * 3 + s.c + s.shift);
  std::vector<float> x = random_normal(count, seed, 0.5f, 2.0f);
  std::vector<float> mod = random_normal(size_t(s.n) * s.mod_ld, seed + 1, 0.0f, 0.5f);
  std::vector<float> g = random_normal(size_t(s.c), seed + 2, 1.0f, 0.2f), b = random_normal(size_t(s.c), seed + 3);
  DevTensor dx = upload_rounded(x, t), dm = upload_rounded(mod, t), dg = upload_rounded(g, t), db = upload_rounded(b, t);
  DevTensor dy(count, t);
  dy.poison();
  LayerNormParams p;
  p.x = dx.ptr(); p.y = dy.ptr(); p.rows = rows; p.c = s.c; p.eps = 1e-6f; p.dtype = t;
  if (s.affine) { p.gamma = dg.ptr(); p.beta = db.ptr(); }
  const size_t es = dtype_size(t);
  p.shift = static_cast<char*>(dm.ptr()) + size_t(s.shift) * es;
  p.scale = static_cast<char*>(dm.ptr()) + size_t(s.scale) * es;
  p.mod_ld = s.mod_ld;
  p.rows_per_sample = s.tokens;
  const LayerNormLaunch l = layer_norm_cuda_launch(p);
  layer_norm_cuda(p, nullptr);
  std::vector<float> ref(count);
  LayerNormParams r = p;
  r.x = x.data(); r.y = ref.data(); r.dtype = DType::F32;
  r.gamma = s.affine ? g.data() : nullptr;
  r.beta = s.affine ? b.data() : nullptr;
  r.shift = mod.data() + s.shift;
  r.scale = mod.data() + s.scale;
  layer_norm_ref(r);
  expect_output_ok(dy, ref, "adaLN rows=" + std::to_string(rows) + " c=" + std::to_string(s.c) + " ld=" +
                                std::to_string(s.mod_ld) + " shift@" + std::to_string(s.shift) + " [" +
                                layer_norm_path_name(l.path) + " vec=" + std::to_string(l.vec) + "] " + dtype_name(t));
}

TEST(DiTKernelsGpu, AdaLayerNormRealModelShapes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const long long xl = 6LL * 1152 * 28 + 2 * 1152;  // DiT-XL/2's fused modulation width
  const AdaLnCase cases[] = {
      {2, 256, 1152, xl, 0, 1152, false},                          // block 0 norm1, 256 tokens, CFG batch
      {2, 1024, 1152, xl, 6 * 1152 * 27 + 3 * 1152, 6 * 1152 * 27 + 4 * 1152, false},  // block 27 norm3, 512 px
      {64, 256, 1152, xl, 6 * 1152 * 28, 6 * 1152 * 28 + 1152, false},  // norm_out, batch 32 with CFG
  };
  int ran = 0;
  for (const AdaLnCase& s : cases)
    for (DType t : kAllDtypes) {
      run_ada_ln(s, t);
      ++ran;
    }
  EXPECT_EQ(ran, 9);
}

TEST(DiTKernelsGpu, AdaLayerNorm) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const AdaLnCase cases[] = {
      {3, 16, 24, 6 * 24, 3 * 24, 4 * 24, false},                 // the fixtures' D = 24 (unmodulated width)
      {2, 36, 36, 6 * 36, 0, 36, true},                           // D = 36 (scalar for fp16), affine norm3
      {2, 7, 40, 6 * 40 + 1, 1, 41, false},                       // odd ld and offsets: scalar path
      {1, 3, 3000, 9000, 3000, 6000, true},                       // the Block path with modulation
  };
  int ran = 0;
  for (const AdaLnCase& s : cases)
    for (DType t : kAllDtypes) {
      run_ada_ln(s, t);
      ++ran;
    }
  EXPECT_EQ(ran, 12);
}

struct GateCase {
  int n, tokens, k, out;
  long long gate_ld, gate_off;
};

void run_gated_linear(CublasLtContext& ctx, const GateCase& s, DType t) {
  const int m = s.n * s.tokens;
  const uint32_t seed = uint32_t(m + s.k * 3 + s.out);
  std::vector<float> x = random_normal(size_t(m) * s.k, seed);
  std::vector<float> w = random_normal(size_t(s.out) * s.k, seed + 1, 0.0f, 1.0f / std::sqrt(float(s.k)));
  std::vector<float> b = random_normal(size_t(s.out), seed + 2, 0.0f, 0.3f);
  std::vector<float> res = random_normal(size_t(m) * s.out, seed + 3);
  std::vector<float> gate = random_normal(size_t(s.n) * s.gate_ld, seed + 4, 0.0f, 0.5f);
  DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), db = upload_rounded(b, t),
            dr = upload_rounded(res, t), dg = upload_rounded(gate, t), dy(size_t(m) * s.out, t);
  dy.poison();
  LinearParams p;
  p.x = dx.ptr(); p.w = dw.ptr(); p.bias = db.ptr(); p.residual = dr.ptr(); p.y = dy.ptr();
  p.m = m; p.n = s.out; p.k = s.k; p.dtype = t;
  p.gate = static_cast<char*>(dg.ptr()) + size_t(s.gate_off) * dtype_size(t);
  p.gate_ld = s.gate_ld;
  p.rows_per_gate = s.tokens;
  linear_cuda(p, ctx, nullptr);
  std::vector<float> ref(dy.count());
  LinearParams r = p;
  r.x = x.data(); r.w = w.data(); r.bias = b.data(); r.residual = res.data(); r.y = ref.data();
  r.gate = gate.data() + s.gate_off; r.dtype = DType::F32;
  linear_ref(r);
  // fp16/bf16: the GEMM result is rounded to the storage type before the gate (as diffusers does too).
  expect_output_ok(dy, ref, "gated linear m=" + std::to_string(m) + " k=" + std::to_string(s.k) + " n=" +
                                std::to_string(s.out) + " " + dtype_name(t));
}

TEST(DiTKernelsGpu, GatedLinearRealModelShapes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CublasLtContext ctx;
  const long long xl = 6LL * 1152 * 28 + 2 * 1152;
  const GateCase cases[] = {
      {2, 256, 1152, 1152, xl, 2 * 1152},                 // attn1.to_out.0, block 0
      {2, 256, 4608, 1152, xl, 6 * 1152 * 5 + 5 * 1152},  // ff.net.2, block 5
      {2, 1024, 1152, 1152, 6 * 1152, 2 * 1152},          // per-block modulation (unshared embedders), 512 px
  };
  int ran = 0;
  for (const GateCase& s : cases)
    for (DType t : kAllDtypes) {
      run_gated_linear(ctx, s, t);
      ++ran;
    }
  EXPECT_EQ(ran, 9);
}

TEST(DiTKernelsGpu, GatedLinear) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CublasLtContext ctx;
  const GateCase cases[] = {
      {3, 16, 24, 24, 6 * 24, 5 * 24},  // fixture sizes
      {2, 9, 40, 36, 6 * 36 + 1, 7},    // odd ld / offset: the scalar epilogue
  };
  int ran = 0;
  for (const GateCase& s : cases)
    for (DType t : kAllDtypes) {
      run_gated_linear(ctx, s, t);
      ++ran;
    }
  EXPECT_EQ(ran, 6);
}

// ---- whole models ----------------------------------------------------------------------------------------

fs::path dit_fixture(const std::string& rel) { return source_path("tests/fixtures/dit/" + rel); }

const ModelFile& converted(const std::string& src, DType dtype = DType::F32) {
  static std::map<std::pair<std::string, int>, ModelFile> cache;
  const auto key = std::make_pair(src, int(dtype));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ConvertOptions opt;
  opt.input = source_path(src);
  opt.output = temp_dir("dit_gpu") + "/m.drt";
  opt.dtype = dtype;
  convert_diffusers(opt);
  return cache.emplace(key, read_model_file(opt.output)).first->second;
}

struct Fwd {
  int n = 0, h = 0, w = 0;
  std::vector<float> x, t;  // x NHWC
  std::vector<int32_t> y;
  GraphInputs in() const {
    GraphInputs g;
    g.sample = x.data(); g.timesteps = t.data(); g.labels = y.data();
    return g;
  }
};
Fwd load_fwd(const fs::path& d) {
  Fwd f;
  NpyArray x = read_npy((d / "x.npy").string());
  f.n = int(x.shape[0]); f.h = int(x.shape[2]); f.w = int(x.shape[3]);
  f.x = nchw_to_nhwc(x.as_f32(), f.n, int(x.shape[1]), f.h, f.w);
  NpyArray t = read_npy((d / "t.npy").string());
  if (t.type == NpyType::F32) f.t = t.as_f32();
  else for (int64_t v : t.as_i64()) f.t.push_back(float(v));
  for (int64_t v : read_npy((d / "class_labels.npy").string()).as_i64()) f.y.push_back(int32_t(v));
  return f;
}

std::vector<float> cpu_forward(const ModelFile& mf, const Fwd& f) {
  CpuWeights w(mf);
  CpuExecutor ex(mf, w, mf.graph, PlanInputs{f.n, f.h, f.w, 0});
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(f.in(), out.data());
  return out;
}

struct ModelCase {
  const char* model;  // source folder under tests/fixtures
  const char* fwd;    // case folder under tests/fixtures
};
const ModelCase kModelCases[] = {
    {"dit/dit_s8_sigma/pipeline", "dit/dit_s8_sigma/fwd0"},
    {"dit/dit_s8_sigma/pipeline", "dit/dit_s8_sigma/fwd2"},  // 12x12 input: table recomputed
    {"dit/dit_s12_eps/pipeline", "dit/dit_s12_eps/fwd0"},
    {"dit/dit_c10/pipeline", "dit/dit_c10/fwd0"},
    {"dit/dit_s8_sigma/pipeline", "dit_extra/nonsquare/h8w12"},
    {"dit_extra/dit_p8_affine/transformer", "dit_extra/dit_p8_affine/fwd0"},
    {"dit_extra/dit_p1_geglu/transformer", "dit_extra/dit_p1_geglu/fwd0"},
};

TEST(DiTCuda, Fp32MatchesCpuAndDiffusers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int ran = 0;
  for (const ModelCase& c : kModelCases) {
    const ModelFile& mf = converted(std::string("tests/fixtures/") + c.model);
    const fs::path d = source_path(std::string("tests/fixtures/") + c.fwd);
    const Fwd f = load_fwd(d);
    const std::vector<float> ref = cpu_forward(mf, f);
    CudaWeights w(mf);
    CudaExecutor ex(mf, w, ctx, mf.graph, PlanInputs{f.n, f.h, f.w, 0});
    std::vector<float> got(ref.size());
    ex.run(f.in(), got.data());
    const std::vector<float> want = read_npy((d / "out.npy").string()).as_f32();
    const std::vector<float> got_nchw = nhwc_to_nchw(got, f.n, f.h, f.w, mf.graph.out_channels);
    const double rel = rel_l2(got.data(), ref.data(), ref.size());
    const double rel_d = rel_l2(got_nchw.data(), want.data(), want.size());
    std::printf("[cuda dit] %-36s fp32 vs cpu %.3g  vs diffusers %.3g\n", c.fwd, rel, rel_d);
    if (!(rel <= 1e-5)) {
      CompareReport rep = ex.compare_with_cpu(f.in(), 1e-5);
      ADD_FAILURE() << c.fwd << ": rel_l2 " << rel << "; " << rep.summary();
    }
    EXPECT_LE(rel_d, 2e-5) << c.fwd;
    ++ran;
  }
  EXPECT_EQ(ran, 7);
}

TEST(DiTCuda, HalfPrecisionWithinBound) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int ran = 0;
  for (const ModelCase& c : kModelCases) {
    const fs::path d = source_path(std::string("tests/fixtures/") + c.fwd);
    const Fwd f = load_fwd(d);
    const std::vector<float> ref = cpu_forward(converted(std::string("tests/fixtures/") + c.model), f);
    for (auto [dt, bound] : {std::pair{DType::F16, 1e-2}, std::pair{DType::BF16, 3e-2}}) {
      const ModelFile& mf = converted(std::string("tests/fixtures/") + c.model, dt);
      CudaWeights w(mf);
      CudaExecutor ex(mf, w, ctx, mf.graph, PlanInputs{f.n, f.h, f.w, 0});
      std::vector<float> got(ref.size());
      ex.run(f.in(), got.data());
      const double rel = rel_l2(got.data(), ref.data(), ref.size());
      std::printf("[cuda dit] %-36s %s vs cpu fp32 %.3g\n", c.fwd, dtype_name(dt), rel);
      if (!(rel <= bound)) {
        CompareReport rep = ex.compare_with_cpu(f.in(), bound);
        ADD_FAILURE() << c.fwd << " " << dtype_name(dt) << ": rel_l2 " << rel << " > " << bound << "; " << rep.summary();
      }
      ++ran;
    }
  }
  EXPECT_EQ(ran, 14);
}

TEST(DiTCuda, DdimPipelineWithTheCudaModelMatchesDiTPipeline) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int ran = 0;
  for (auto [model, run] : {std::pair{"dit_s8_sigma", "ddim10_g4_b2"}, std::pair{"dit_s12_eps", "ddim5_g4_b1"}}) {
    const ModelFile& mf = converted(std::string("tests/fixtures/dit/") + model + "/pipeline");
    const fs::path d = dit_fixture(std::string(model) + "/pipelines/" + run);
    const nlohmann::json meta = nlohmann::json::parse(std::ifstream(d / "meta.json"));
    SampleRequest req;
    req.sampler = SamplerKind::Ddim;
    req.steps = meta["steps"].get<int>();
    req.seed = meta["seed"].get<uint64_t>();
    req.rng = RngKind::Torch;
    req.batch = meta["batch"].get<int>();
    const auto shape = meta["latent_shape"].get<std::vector<int64_t>>();
    req.channels = int(shape[1]); req.height = int(shape[2]); req.width = int(shape[3]);
    for (int64_t y : meta["class_labels"].get<std::vector<int64_t>>()) req.class_labels.push_back(int32_t(y));
    req.guidance_scale = meta["guidance_scale"].get<float>();
    req.null_class = mf.conditioning.null_class;
    CudaWeights w(mf);
    std::map<int, std::unique_ptr<CudaExecutor>> ex;
    UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
      auto& e = ex[bm];
      if (!e) e = std::make_unique<CudaExecutor>(mf, w, ctx, bm, req.height, req.width);
      e->run(x, t, labels, out);
    };
    const SchedulerConfig sched = scheduler_config_from_json(meta["effective_scheduler_config"], "meta.json");
    const std::vector<float> lat = run_sampler(sched, req, mf.graph.out_channels, unet, {});
    const std::vector<float> lat_nchw = nhwc_to_nchw(lat, req.batch, req.height, req.width, req.channels);
    const std::vector<float> want = read_npy((d / "latents.npy").string()).as_f32();
    double lat_max = 0;
    for (float v : want) lat_max = std::max(lat_max, double(std::fabs(v)));
    const double lat_err = max_abs_diff(lat_nchw.data(), want.data(), want.size());
    CpuWeights cw(mf);
    const std::vector<float> img = to_image_01(decode_latents_cpu(mf, cw, lat, req.batch, req.height, req.width));
    const std::vector<float> want_img = read_npy((d / "images.npy").string()).as_f32();
    const double img_err = max_abs_diff(img.data(), want_img.data(), want_img.size());
    std::printf("[cuda dit pipe] %s/%s latents %.3g of %.3g  images %.3g\n", model, run, lat_err, lat_max, img_err);
    EXPECT_LE(lat_err / lat_max, 1e-4) << run;  // random eps weights amplify ulp differences over the steps
    EXPECT_LE(img_err, 1e-4) << run;
    ++ran;
  }
  EXPECT_EQ(ran, 2);
}

}  // namespace
}  // namespace diffrt::test
