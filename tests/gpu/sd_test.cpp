// Latent diffusion on the CUDA backend (Stable-Diffusion-style fixtures tests/fixtures/sd/{sd1_tiny,sd2_tiny},
// made by diffusers 0.27.2 from random weights, converted here with the converter):
//   * text-conditioned UNet forward: GPU fp32 vs the CPU executor (rel L2 <= 1e-5, TF32 off) and vs diffusers'
//     out.npy; fp16 / bf16 vs the CPU fp32 model (<= 1e-2 / 3e-2; compare mode names the first diverging node on
//     failure);
//   * compare mode node by node (fp32, <= 1e-4) on the text UNet and on the VAE decoder, and it must have seen
//     the new ops (layer_norm, geglu, cross-attention);
//   * cross-attention through the executor at context lengths 77 and 5 (odd, below any tile), and the kernel on
//     the executor's exact cross layout (q [B,Lq,C], kv [B,Lkv,2C] = [k | v]) at SD head dims, guard bytes and
//     poisoned outputs;
//   * VAE decode: GPU vs CPU and vs diffusers' raw.npy / image.npy; bf16 within bound; an fp16 decode that
//     overflows (a VAE stored in fp16 on request) is an Error(Unsupported), never inf pixels;
//   * mixed precision per component (fp16 UNet, fp32 VAE from one CudaWeights): each graph in its dtype;
//   * the planner's figures bound the executors' buffers and the cuDNN workspace + scratch;
//   * the text-conditioned sampling loop: Philox DDIM with guidance vs the CPU loop; CUDA-graph replay == eager
//     == debug mode, bit for bit, for fp32 and fp16 models; torch RNG reproduces StableDiffusionPipeline's images
//     (fixtures' pipelines/*: DDIM 1e-3, DDPM 5e-3 max abs on [0, 1], as the CPU test);
//   * bad inputs (missing / extra text context, timesteps given to the VAE, wrong context size) are errors.
// Every test skips without a device; with one, each counts what it checked so none passes vacuously.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "kernels/attention/attention.h"
#include "base/error.h"
#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/cuda/cuda_latent.h"
#include "runtime/cuda/cuda_sampler.h"
#include "runtime/latent_pipeline.h"
#include "base/layout.h"
#include "base/npy.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

const char* kModels[] = {"sd1_tiny", "sd2_tiny"};

fs::path fixture(const std::string& model) { return test::source_path("tests/fixtures/sd/" + model); }

// One conversion per (fixture model, dtype, VAE dtype) per test binary. The VAE's dtype defaults to the
// converter's (fp32 beside an fp16 UNet: force_upcast).
const ModelFile& converted(const std::string& model, DType dtype = DType::F32, std::optional<DType> vae = {}) {
  static std::map<std::tuple<std::string, DType, int>, ModelFile> cache;
  const auto key = std::make_tuple(model, dtype, vae ? int(*vae) : -1);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ConvertOptions opt;
  opt.input = (fixture(model) / "pipeline").string();
  opt.output = test::temp_dir("cuda_sd_" + model) + "/m.drt";
  opt.dtype = dtype;
  opt.vae_dtype = vae;
  convert_diffusers(opt);
  return cache.emplace(key, read_model_file(opt.output)).first->second;
}

std::vector<float> npy_f32(const fs::path& p) { return read_npy(p.string()).as_f32(); }

// One UNet forward's host inputs: sample NHWC, timesteps, encoder_hidden_states [n, len, dim].
struct UnetInputs {
  int n = 0, c = 0, h = 0, w = 0, len = 0;
  std::vector<float> x, t, ctx;
  GraphInputs graph_inputs() const {
    GraphInputs in;
    in.sample = x.data(); in.timesteps = t.data(); in.context = ctx.data();
    return in;
  }
  PlanInputs plan_inputs() const { return PlanInputs{n, h, w, len}; }
};

UnetInputs load_unet_case(const fs::path& d) {
  UnetInputs u;
  NpyArray x = read_npy((d / "sample.npy").string()), e = read_npy((d / "encoder_hidden_states.npy").string());
  u.n = int(x.shape[0]); u.c = int(x.shape[1]); u.h = int(x.shape[2]); u.w = int(x.shape[3]);
  u.len = int(e.shape[1]);
  u.x = nchw_to_nhwc(x.as_f32(), u.n, u.c, u.h, u.w);
  u.t = npy_f32(d / "timesteps.npy");
  u.ctx = e.as_f32();
  return u;
}

// The same sample and timesteps with a fresh random context of `len` tokens.
UnetInputs with_context_len(UnetInputs u, int len, int dim, uint32_t seed) {
  u.len = len;
  u.ctx = test::random_normal(size_t(u.n) * size_t(len) * size_t(dim), seed);
  return u;
}

std::vector<float> cpu_unet(const ModelFile& mf, const UnetInputs& u) {
  CpuWeights w(mf);
  CpuExecutor ex(mf, w, mf.graph, u.plan_inputs());
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(u.graph_inputs(), out.data());
  return out;
}

std::vector<float> gpu_unet(const ModelFile& mf, CudaContext& ctx, const UnetInputs& u) {
  CudaWeights w(mf);
  CudaExecutor ex(mf, w, ctx, mf.graph, u.plan_inputs());
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(u.graph_inputs(), out.data());
  return out;
}

struct Latents {
  int n = 0, c = 0, h = 0, w = 0;
  std::vector<float> z;  // NHWC
};
Latents load_latents(const fs::path& npy) {
  NpyArray a = read_npy(npy.string());
  Latents l;
  l.n = int(a.shape[0]); l.c = int(a.shape[1]); l.h = int(a.shape[2]); l.w = int(a.shape[3]);
  l.z = nchw_to_nhwc(a.as_f32(), l.n, l.c, l.h, l.w);
  return l;
}

// The first DDIM pipeline run of a fixture model (its effective scheduler config and prompt embeddings).
fs::path ddim_run(const std::string& model) {
  for (const fs::path& d : test::sorted_run_dirs(fixture(model) / "pipelines"))
    if (test::load_json((d / "meta.json").string())["sampler"] == "ddim") return d;
  return {};
}

SchedulerConfig sched_of_run(const fs::path& run) {
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(run / "meta.json"));
  return scheduler_config_from_json(meta["effective_scheduler_config"], "meta.json");
}

// A text-conditioned request on latents h x w (Philox unless told), and its [negative; positive] context.
struct TextRun {
  SampleRequest req;
  std::vector<float> context;
  int len = 0;
};
TextRun text_run(const ModelFile& mf, int batch, int h, int w, int len, float guidance, uint32_t seed) {
  TextRun r;
  r.req.sampler = SamplerKind::Ddim;
  r.req.steps = 6;
  r.req.seed = seed;
  r.req.batch = batch;
  r.req.height = h;
  r.req.width = w;
  r.req.channels = mf.graph.in_channels;
  r.req.guidance_scale = guidance;
  r.req.text_cfg = true;
  r.len = len;
  TextEmbeds pos, neg;
  pos.batch = neg.batch = batch;
  pos.len = neg.len = len;
  pos.dim = neg.dim = mf.graph.context_dim;
  pos.data = test::random_normal(size_t(batch) * len * pos.dim, seed + 1);
  neg.data = test::random_normal(size_t(batch) * len * pos.dim, seed + 2);
  const bool guided = guidance_on(r.req);
  r.context = model_context(mf.graph, pos, guided ? &neg : nullptr, guided);
  return r;
}

}  // namespace

TEST(SdCuda, UNetFp32MatchesCpuAndDiffusers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int cases = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    ASSERT_GE(mf.graph.context, 0) << m;
    for (const char* c : {"unet_case0", "unet_case1"}) {
      const fs::path d = fixture(m) / c;
      UnetInputs u = load_unet_case(d);
      auto ref = cpu_unet(mf, u), got = gpu_unet(mf, ctx, u);
      ASSERT_EQ(got.size(), ref.size());
      std::vector<float> want = npy_f32(d / "out.npy");
      std::vector<float> got_nchw = nhwc_to_nchw(got, u.n, u.h, u.w, mf.graph.out_channels);
      ASSERT_EQ(got_nchw.size(), want.size());
      const double rel = test::rel_l2(got.data(), ref.data(), ref.size());
      const double rel_d = test::rel_l2(got_nchw.data(), want.data(), want.size());
      std::printf("[cuda sd unet] %-9s %s L=%-3d vs cpu %.3g  vs diffusers %.3g\n", m, c, u.len, rel, rel_d);
      EXPECT_LE(rel, 1e-5) << m << "/" << c;
      EXPECT_LE(rel_d, 2e-5) << m << "/" << c;
      ++cases;
    }
  }
  EXPECT_EQ(cases, 4);
}

TEST(SdCuda, UNetHalfPrecisionWithinBound) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int cases = 0;
  for (const char* m : kModels) {
    UnetInputs u = load_unet_case(fixture(m) / "unet_case0");
    auto ref = cpu_unet(converted(m), u);
    for (auto [dt, bound] : {std::pair{DType::F16, 1e-2}, std::pair{DType::BF16, 3e-2}}) {
      const ModelFile& mf = converted(m, dt);
      auto got = gpu_unet(mf, ctx, u);
      const double rel = test::rel_l2(got.data(), ref.data(), ref.size());
      std::printf("[cuda sd unet] %-9s %s rel_l2 %.3g\n", m, dtype_name(dt), rel);
      if (!(rel <= bound)) {
        CudaWeights w(mf);
        CudaExecutor ex(mf, w, ctx, mf.graph, u.plan_inputs());
        CompareReport rep = ex.compare_with_cpu(u.graph_inputs(), bound);
        ADD_FAILURE() << m << " " << dtype_name(dt) << ": rel_l2 " << rel << " > " << bound << "; " << rep.summary();
      }
      ++cases;
    }
  }
  EXPECT_EQ(cases, 4);
}

TEST(SdCuda, CompareModeTextUNetAndVaeAllNodesAgree) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    CudaWeights w(mf);
    {
      UnetInputs u = load_unet_case(fixture(m) / "unet_case1");
      CudaExecutor ex(mf, w, ctx, mf.graph, u.plan_inputs());
      CompareReport rep = ex.compare_with_cpu(u.graph_inputs(), 1e-4);
      EXPECT_EQ(rep.nodes.size(), mf.graph.nodes.size()) << m;
      EXPECT_EQ(rep.first_bad, -1) << m << " unet: " << rep.summary();
      std::set<std::string> ops;
      int cross = 0;
      for (const NodeCompare& nc : rep.nodes) ops.insert(nc.op);
      for (const Node& nd : mf.graph.nodes)
        cross += std::holds_alternative<AttentionAttrs>(nd.attrs) && nd.inputs.size() == 2;
      EXPECT_TRUE(ops.count("layer_norm")) << m << ": compare mode saw no layer_norm";
      EXPECT_TRUE(ops.count("geglu")) << m << ": compare mode saw no geglu";
      EXPECT_GT(cross, 0) << m << ": no cross-attention node";
    }
    {
      Latents l = load_latents(fixture(m) / "vae_decode" / "latents.npy");
      CudaExecutor ex(mf, w, ctx, mf.vae.graph, PlanInputs{l.n, l.h, l.w, 0});
      GraphInputs in;
      in.sample = l.z.data();
      CompareReport rep = ex.compare_with_cpu(in, 1e-4);
      EXPECT_EQ(rep.nodes.size(), mf.vae.graph.nodes.size()) << m;
      EXPECT_EQ(rep.first_bad, -1) << m << " vae: " << rep.summary();
    }
  }
}

TEST(SdCuda, CrossAttentionContextLengths77And5) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int cases = 0;
  for (const char* m : kModels) {
    const ModelFile& f32 = converted(m);
    const UnetInputs base = load_unet_case(fixture(m) / "unet_case0");
    for (int len : {77, 5}) {
      UnetInputs u = with_context_len(base, len, f32.graph.context_dim, uint32_t(1000 + len));
      auto ref = cpu_unet(f32, u);
      auto got = gpu_unet(f32, ctx, u);
      const double rel = test::rel_l2(got.data(), ref.data(), ref.size());
      auto half = gpu_unet(converted(m, DType::F16), ctx, u);
      const double rel_h = test::rel_l2(half.data(), ref.data(), ref.size());
      std::printf("[cuda sd cross] %-9s L=%-3d fp32 %.3g  fp16 %.3g\n", m, len, rel, rel_h);
      EXPECT_LE(rel, 1e-5) << m << " L=" << len;
      EXPECT_LE(rel_h, 1e-2) << m << " L=" << len;
      ++cases;
    }
  }
  EXPECT_EQ(cases, 4);
}

// The kernel on exactly the layout the executor hands it for cross-attention: q [B, Lq, C] (ldq = C), one kv
// tensor [B, Lkv, 2C] with k at column 0 and v at column C (ldk = ldv = 2C), o [B, Lq, C].
TEST(SdCuda, CrossAttentionKernelOnInterleavedKv) {
  DIFFRT_SKIP_WITHOUT_GPU();
  struct Case { int b, heads, lq, lkv, d; };
  // SD 1.5 levels (d 40 at 4096 tokens, 80 at 1024, 160 at 256; 8 heads), SD2's d 64, the fixtures' d 8,
  // and context lengths 77, 5 and 1.
  const Case cases[] = {{1, 8, 4096, 77, 40}, {1, 8, 1024, 77, 80}, {1, 8, 256, 77, 160}, {2, 5, 1024, 77, 64},
                        {2, 2, 64, 5, 8},     {2, 4, 100, 5, 40},   {1, 3, 33, 1, 64}};
  int runs = 0;
  for (const Case& s : cases) {
    for (DType t : test::kAllDtypes) {
      const int C = s.heads * s.d;
      const uint32_t seed = uint32_t(s.lq * 31 + s.lkv * 7 + s.d);
      std::vector<float> hq = test::random_normal(size_t(s.b) * s.lq * C, seed);
      std::vector<float> hkv = test::random_normal(size_t(s.b) * s.lkv * 2 * C, seed + 1);
      test::DevTensor dq = test::upload_rounded(hq, t), dkv = test::upload_rounded(hkv, t);
      test::DevTensor dout(size_t(s.b) * s.lq * C, t);
      dout.poison();
      const size_t es = dtype_size(t);
      AttentionParams p;
      p.q = dq.ptr(); p.k = dkv.ptr(); p.v = static_cast<const char*>(dkv.ptr()) + size_t(C) * es; p.o = dout.ptr();
      p.batch = s.b; p.heads = s.heads; p.lq = s.lq; p.lkv = s.lkv; p.head_dim = s.d;
      p.ldq = C; p.ldk = p.ldv = 2 * C; p.ldo = C;
      p.scale = 1.0f / std::sqrt(float(s.d));
      p.dtype = t;
      attention_cuda(p, nullptr);
      std::vector<float> ref(dout.count());
      AttentionParams r = p;
      r.q = hq.data(); r.k = hkv.data(); r.v = hkv.data() + C; r.o = ref.data(); r.dtype = DType::F32;
      attention_ref(r);
      test::expect_output_ok(dout, ref, "cross b" + std::to_string(s.b) + " h" + std::to_string(s.heads) + " lq" +
                                            std::to_string(s.lq) + " lkv" + std::to_string(s.lkv) + " d" +
                                            std::to_string(s.d) + " " + dtype_name(t));
      ++runs;
    }
  }
  EXPECT_EQ(runs, int(std::size(cases)) * 3);
}

TEST(SdCuda, VaeDecodeMatchesCpuAndDiffusers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int cases = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    ASSERT_TRUE(mf.vae.present()) << m;
    const fs::path d = fixture(m) / "vae_decode";
    Latents l = load_latents(d / "latents.npy");
    CudaWeights w(mf);
    CpuWeights cw(mf);
    std::vector<float> got = decode_latents_cuda(mf, w, ctx, l.z, l.n, l.h, l.w);
    std::vector<float> ref = decode_latents_cpu(mf, cw, l.z, l.n, l.h, l.w);
    ASSERT_EQ(got.size(), ref.size());
    const int f = vae_scale_factor(mf);
    std::vector<float> got_nchw = nhwc_to_nchw(got, l.n, f * l.h, f * l.w, 3);
    std::vector<float> want_raw = npy_f32(d / "raw.npy"), want_img = npy_f32(d / "image.npy");
    ASSERT_EQ(got_nchw.size(), want_raw.size());
    std::vector<float> img = to_image_01(got);
    const double rel = test::rel_l2(got.data(), ref.data(), ref.size());
    const double rel_d = test::rel_l2(got_nchw.data(), want_raw.data(), want_raw.size());
    const double img_err = test::max_abs_diff(img.data(), want_img.data(), want_img.size());
    std::printf("[cuda sd vae] %-9s vs cpu %.3g  vs diffusers %.3g  image max_abs %.3g\n", m, rel, rel_d, img_err);
    EXPECT_LE(rel, 1e-5) << m;
    EXPECT_LE(rel_d, 2e-5) << m;
    EXPECT_LE(img_err, 1e-4) << m;
    // bf16 storage: within the whole-model bf16 bound.
    const ModelFile& bf = converted(m, DType::BF16);
    CudaWeights wb(bf);
    std::vector<float> gb = decode_latents_cuda(bf, wb, ctx, l.z, l.n, l.h, l.w);
    const double rel_b = test::rel_l2(gb.data(), ref.data(), ref.size());
    std::printf("[cuda sd vae] %-9s bf16 rel_l2 %.3g\n", m, rel_b);
    EXPECT_LE(rel_b, 3e-2) << m;
    ++cases;
  }
  EXPECT_EQ(cases, 2);
}

// The SD VAE overflows fp16 at real sizes (diffusers' force_upcast), so the converter keeps it in fp32 by default;
// one stored in fp16 on request (--vae-dtype fp16) is caught by the safety net. The tiny fixture does not
// overflow, so latents far out of range force it: the decode must throw Error(Unsupported) naming the cause,
// never return inf/NaN pixels.
TEST(SdCuda, Fp16VaeOverflowIsAnErrorNotInf) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const ModelFile& mf = converted("sd1_tiny", DType::F16, DType::F16);
  ASSERT_EQ(mf.vae.graph.dtype, DType::F16);
  CudaWeights w(mf);
  Latents l = load_latents(fixture("sd1_tiny") / "vae_decode" / "latents.npy");
  std::vector<float> ok = decode_latents_cuda(mf, w, ctx, l.z, l.n, l.h, l.w);  // in range: finite, no error
  EXPECT_EQ(test::count_nonfinite(ok), 0u);
  std::vector<float> huge = l.z;
  for (float& v : huge) v *= 1e5f;
  try {
    std::vector<float> img = decode_latents_cuda(mf, w, ctx, huge, l.n, l.h, l.w);
    ADD_FAILURE() << "no error; non-finite pixels: " << test::count_nonfinite(img);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
  }
}

TEST(SdCuda, TextSamplerMatchesCpuLoop) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int runs = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    const fs::path run = ddim_run(m);
    ASSERT_FALSE(run.empty()) << m;
    const SchedulerConfig sc = sched_of_run(run);
    CudaWeights w(mf);
    CpuWeights cw(mf);
    for (float guidance : {1.0f, 5.0f}) {
      TextRun tr = text_run(mf, 2, 8, 8, 77, guidance, 21);
      tr.req.eta = 0.5f;  // step noise on the device (Philox)
      std::vector<float> got = sample_latents_cuda(mf, w, ctx, sc, tr.req, tr.context, tr.len, {});
      std::vector<float> ref = sample_latents_cpu(mf, cw, sc, tr.req, tr.context, tr.len, {});
      ASSERT_EQ(got.size(), ref.size());
      const double rel = test::rel_l2(got.data(), ref.data(), ref.size());
      auto img_g = to_image_01(decode_latents_cpu(mf, cw, got, tr.req.batch, 8, 8));
      auto img_r = to_image_01(decode_latents_cpu(mf, cw, ref, tr.req.batch, 8, 8));
      const double err = test::max_abs_diff(img_g.data(), img_r.data(), img_r.size());
      std::printf("[cuda sd sampler] %-9s g=%.1f latents rel_l2 %.3g  images max_abs %.3g\n", m, guidance, rel, err);
      EXPECT_LE(rel, 1e-4) << m << " g=" << guidance;
      EXPECT_LE(err, 1e-3) << m << " g=" << guidance;
      ++runs;
    }
  }
  EXPECT_EQ(runs, 4);
}

TEST(SdCuda, TextGraphReplayEqualsEagerAndDebug) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const fs::path run = ddim_run("sd2_tiny");  // v-prediction, per-level heads, linear projections
  ASSERT_FALSE(run.empty());
  const SchedulerConfig sc = sched_of_run(run);
  for (DType dt : {DType::F32, DType::F16}) {
    const ModelFile& mf = converted("sd2_tiny", dt);
    CudaWeights w(mf);
    TextRun tr = text_run(mf, 2, 8, 8, 77, 7.5f, 3);
    tr.req.steps = 8;
    const CudaTextContext text{tr.context.data(), tr.len};
    CudaSamplerOptions eager, debug, no_pre;
    eager.use_cuda_graph = false;
    debug.debug = true;
    no_pre.precompute_time_embeddings = false;
    CudaSamplerStats sg, se, sd, sn;
    int progress_calls = 0;
    ProgressFn prog = [&](int step, int total) {
      EXPECT_EQ(total, 8);
      EXPECT_EQ(step, ++progress_calls);
      return true;
    };
    auto a = run_sampler_cuda(mf, w, ctx, sc, tr.req, prog, {}, &sg, text);
    auto b = run_sampler_cuda(mf, w, ctx, sc, tr.req, {}, eager, &se, text);
    auto c = run_sampler_cuda(mf, w, ctx, sc, tr.req, {}, debug, &sd, text);
    auto d = run_sampler_cuda(mf, w, ctx, sc, tr.req, {}, no_pre, &sn, text);
    EXPECT_TRUE(sg.graph_used) << sg.graph_fallback;
    EXPECT_TRUE(sg.time_embeddings_precomputed);
    EXPECT_FALSE(se.graph_used);
    EXPECT_FALSE(sd.graph_used);
    EXPECT_TRUE(sn.graph_used) << sn.graph_fallback;
    EXPECT_EQ(progress_calls, 8);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(test::count_nonfinite(a), 0u);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << dtype_name(dt) << ": graph != eager";
    EXPECT_EQ(0, std::memcmp(b.data(), c.data(), b.size() * sizeof(float))) << dtype_name(dt) << ": debug != eager";
    EXPECT_LE(test::rel_l2(d.data(), a.data(), a.size()), dt == DType::F32 ? 1e-5 : 1e-2) << dtype_name(dt);
    // The context really is read: another context gives other latents.
    TextRun other = text_run(mf, 2, 8, 8, 77, 7.5f, 4);
    other.req = tr.req;  // same request and noise, other embeddings
    auto e = run_sampler_cuda(mf, w, ctx, sc, other.req, {}, {}, nullptr, CudaTextContext{other.context.data(), other.len});
    EXPECT_GT(test::max_abs_diff(e.data(), a.data(), a.size()), 1e-3) << dtype_name(dt) << ": context ignored";
  }
}

TEST(SdCuda, PipelinesMatchStableDiffusionPipeline) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int runs = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m);
    CudaWeights w(mf);
    for (const test::PipelineRun& r : test::pipeline_runs(fixture(m) / "pipelines", mf)) {
      const SampleRequest& req = r.req;
      std::vector<float> lat = sample_latents_cuda(mf, w, ctx, r.sched, req, r.context, r.len, {});
      const double lat_err =
          test::run_max_abs(r, "latents.npy", nhwc_to_nchw(lat, req.batch, req.height, req.width, req.channels));
      std::vector<float> img = to_image_01(decode_latents_cuda(mf, w, ctx, lat, req.batch, req.height, req.width));
      const double err = test::run_max_abs(r, "images.npy", img);
      std::printf("[cuda sd pipe] %-9s %-18s latents max_abs %.3g  images max_abs %.3g\n", m, r.dir.filename().c_str(),
                  lat_err, err);
      EXPECT_LE(err, req.sampler == SamplerKind::Ddim ? 1e-3 : 5e-3) << r.dir;
      ++runs;
    }
  }
  EXPECT_GE(runs, 6);
}

// Mixed precision per component: `convert --dtype fp16` stores the UNet in fp16 and the VAE in fp32; on the GPU each
// graph runs in its own dtype from the one shared CudaWeights. The fp32 VAE decodes within the fp32 bound of the
// CPU (so it did not run in fp16), the UNet within the fp16 bound, and even latents that overflow an fp16 VAE
// decode to finite pixels.
TEST(SdCuda, MixedPrecisionEachGraphRunsInItsDtype) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int cases = 0;
  for (const char* m : kModels) {
    const ModelFile& mf = converted(m, DType::F16);
    ASSERT_EQ(mf.graph.dtype, DType::F16) << m;
    ASSERT_EQ(mf.vae.graph.dtype, DType::F32) << m;
    CudaWeights w(mf);
    EXPECT_EQ(w.dtype(), DType::F16);
    CpuWeights cw(mf);
    UnetInputs u = load_unet_case(fixture(m) / "unet_case0");
    CudaExecutor unet(mf, w, ctx, mf.graph, u.plan_inputs());
    EXPECT_EQ(unet.dtype(), DType::F16);
    const std::vector<float> ref_u = cpu_unet(converted(m), u);
    std::vector<float> got_u(ref_u.size());
    unet.run(u.graph_inputs(), got_u.data());
    const double rel_u = test::rel_l2(got_u.data(), ref_u.data(), ref_u.size());
    Latents l = load_latents(fixture(m) / "vae_decode" / "latents.npy");
    CudaExecutor vae(mf, w, ctx, mf.vae.graph, PlanInputs{l.n, l.h, l.w, 0});
    EXPECT_EQ(vae.dtype(), DType::F32);
    const std::vector<float> got_v = decode_latents_cuda(mf, w, ctx, l.z, l.n, l.h, l.w);
    const std::vector<float> ref_v = decode_latents_cpu(mf, cw, l.z, l.n, l.h, l.w);
    const double rel_v = test::rel_l2(got_v.data(), ref_v.data(), ref_v.size());
    std::vector<float> huge = l.z;
    for (float& v : huge) v *= 1e5f;
    const std::vector<float> big = decode_latents_cuda(mf, w, ctx, huge, l.n, l.h, l.w);  // fp32: no overflow
    std::printf("[cuda sd mixed] %-9s unet fp16 rel_l2 %.3g  vae fp32 rel_l2 %.3g\n", m, rel_u, rel_v);
    EXPECT_LE(rel_u, 1e-2) << m;
    EXPECT_LE(rel_v, 1e-5) << m << ": the VAE did not run in fp32";
    EXPECT_EQ(test::count_nonfinite(big), 0u) << m;
    ++cases;
  }
  EXPECT_EQ(cases, 2);
}

// The memory planner's figures bound what the executors and the context really hold (the API's estimate is built
// from them: tests/memory_estimate_test.cpp): each executor's buffers, and the cuDNN workspace plus padding
// scratch after every conv of the UNet and the VAE has run (the algorithm search included: it writes into the
// real outputs, no scratch).
TEST(SdCuda, ExecutorsAllocateWithinThePlannedBytes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int cases = 0;
  for (const char* m : kModels)
    for (DType dt : {DType::F32, DType::F16}) {
      CudaContext ctx;
      const ModelFile& mf = converted(m, dt);
      CudaWeights w(mf);
      UnetInputs u = load_unet_case(fixture(m) / "unet_case0");
      CudaExecutor unet(mf, w, ctx, mf.graph, u.plan_inputs());
      std::vector<float> out(unet.plan().shapes[size_t(mf.graph.output)].numel());
      unet.run(u.graph_inputs(), out.data());
      EXPECT_LE(unet.device_bytes(), cuda_executor_bytes(mf.graph, unet.plan(), mf.graph.dtype).total()) << m;
      Latents l = load_latents(fixture(m) / "vae_decode" / "latents.npy");
      CudaExecutor vae(mf, w, ctx, mf.vae.graph, PlanInputs{l.n, l.h, l.w, 0});
      std::vector<float> img(vae.plan().shapes[size_t(mf.vae.graph.output)].numel());
      GraphInputs vin;
      vin.sample = l.z.data();
      vae.run(vin, img.data());
      EXPECT_LE(vae.device_bytes(), cuda_executor_bytes(mf.vae.graph, vae.plan(), mf.vae.graph.dtype).total()) << m;
      CudaMemoryQuery qu, qv;  // the UNet's shape (no decode) and the VAE's
      qu.batch = u.n; qu.h = u.h; qu.w = u.w; qu.context_len = u.len; qu.decode = false;
      qv.batch = l.n; qv.h = l.h; qv.w = l.w; qv.context_len = u.len;
      const CudaMemoryReport ru = cuda_memory_report(mf, qu), rv = cuda_memory_report(mf, qv);
      EXPECT_LE(ctx.conv().scratch_bytes(), std::max(ru.conv_workspace_bytes, rv.conv_workspace_bytes)) << m;
      EXPECT_EQ(w.bytes(), mf.data.size());
      EXPECT_LE(w.bytes(), ru.weight_bytes) << m;
      ++cases;
    }
  EXPECT_EQ(cases, 4);
}

TEST(SdCuda, RejectsMismatchedInputs) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const ModelFile& mf = converted("sd1_tiny");
  CudaWeights w(mf);
  UnetInputs u = load_unet_case(fixture("sd1_tiny") / "unet_case0");
  CudaExecutor ex(mf, w, ctx, mf.graph, u.plan_inputs());
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  GraphInputs no_ctx = u.graph_inputs();
  no_ctx.context = nullptr;
  EXPECT_THROW(ex.run(no_ctx, out.data()), Error);                              // text model without context
  EXPECT_THROW(ex.run(u.x.data(), u.t.data(), nullptr, out.data()), Error);     // old entry point: no context
  EXPECT_THROW(CudaExecutor(mf, w, ctx, mf.graph, PlanInputs{u.n, u.h, u.w, 0}), Error);  // context_len 0
  ex.run(u.graph_inputs(), out.data());                                         // and it still works
  EXPECT_EQ(test::count_nonfinite(out), 0u);

  Latents l = load_latents(fixture("sd1_tiny") / "vae_decode" / "latents.npy");
  CudaExecutor vae(mf, w, ctx, mf.vae.graph, PlanInputs{l.n, l.h, l.w, 0});
  EXPECT_EQ(vae.timesteps(), nullptr);
  EXPECT_EQ(vae.encoder_hidden_states(), nullptr);
  std::vector<float> img(vae.plan().shapes[size_t(mf.vae.graph.output)].numel());
  std::vector<float> t(size_t(l.n), 1.0f);
  GraphInputs vin;
  vin.sample = l.z.data();
  vin.timesteps = t.data();
  EXPECT_THROW(vae.run(vin, img.data()), Error);  // the VAE takes no timesteps
  EXPECT_THROW(vae.upload_context(u.ctx.data()), Error);
  EXPECT_THROW(decode_latents_cuda(mf, w, ctx, l.z, l.n, l.h + 1, l.w), Error);

  const SchedulerConfig sc = sched_of_run(ddim_run("sd1_tiny"));
  TextRun tr = text_run(mf, 1, 8, 8, 77, 7.5f, 1);
  std::vector<float> short_ctx(tr.context.begin(), tr.context.begin() + tr.context.size() / 2);  // B rows, not 2B
  EXPECT_THROW(sample_latents_cuda(mf, w, ctx, sc, tr.req, short_ctx, tr.len, {}), Error);
  EXPECT_THROW(run_sampler_cuda(mf, w, ctx, sc, tr.req, {}), Error);  // no CudaTextContext
}
