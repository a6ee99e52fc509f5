// CUDA executor and GPU sampling loop against the CPU reference backend, on the diffusers fixture models
// (tests/fixtures/models/*, converted here into a temp dir):
//   * forward fp32: relative L2 <= 1e-5 vs CpuExecutor (TF32 off in cuDNN and cuBLASLt);
//   * forward fp16 / bf16 (weights and activations in that dtype, fp32 accumulation): relative L2 vs the CPU
//     fp32 model <= 1e-2 / 3e-2; on failure compare mode names the first diverging node;
//   * compare mode: every node of an fp32 model within 1e-4;
//   * sampling: same seed, Philox, DDIM (eta 0 and 0.5) and DDPM: GPU loop vs CPU loop images on [0, 1],
//     max abs <= 1e-3; torch RNG reproduces the diffusers pipeline fixtures (1e-3 DDIM, 5e-3 DDPM, as the CPU
//     pipeline test); class-conditional CFG;
//   * batch independence: sample i of a batch of 8 equals a batch-of-one run with first_sample_index = i
//     (max abs <= 1e-4: cuDNN may pick another algorithm per batch size);
//   * CUDA-graph replay == eager launch, bit for bit (same context, same plans), and the graph is used;
//   * progress callback order and cancellation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/cuda/cuda_sampler.h"
#include "base/layout.h"
#include "base/npy.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

std::vector<std::string> fixture_dirs() { return test::model_fixture_dirs(); }

ModelFile convert(const std::string& dir, DType dtype) { return test::convert_and_read(dir, dtype, "cuda_exec"); }

struct Inputs {
  int n = 0, c = 0, h = 0, w = 0;
  std::vector<float> x;  // NHWC
  std::vector<float> t;
  std::vector<int32_t> labels;
};

Inputs load_inputs(const std::string& dir) {
  Inputs in;
  NpyArray x = read_npy(dir + "/x.npy"), t = read_npy(dir + "/t.npy");
  in.n = int(x.shape[0]); in.c = int(x.shape[1]); in.h = int(x.shape[2]); in.w = int(x.shape[3]);
  in.x = nchw_to_nhwc(x.as_f32(), in.n, in.c, in.h, in.w);
  for (int64_t v : t.as_i64()) in.t.push_back(float(v));
  if (fs::exists(dir + "/labels.npy"))
    for (int64_t v : read_npy(dir + "/labels.npy").as_i64()) in.labels.push_back(int32_t(v));
  return in;
}

std::vector<float> cpu_forward(const ModelFile& mf, const Inputs& in) {
  CpuWeights w(mf);
  CpuExecutor ex(mf, w, in.n, in.h, in.w);
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(in.x.data(), in.t.data(), in.labels.empty() ? nullptr : in.labels.data(), out.data());
  return out;
}

std::vector<float> gpu_forward(const ModelFile& mf, const Inputs& in, CudaContext& ctx) {
  CudaWeights w(mf);
  CudaExecutor ex(mf, w, ctx, in.n, in.h, in.w);
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(in.x.data(), in.t.data(), in.labels.empty() ? nullptr : in.labels.data(), out.data());
  return out;
}

SchedulerConfig sched_of(const ModelFile& mf) {
  return mf.scheduler.is_object() && !mf.scheduler.empty() ? scheduler_config_from_json(mf.scheduler, "model")
                                                           : SchedulerConfig{};
}

std::vector<float> cpu_sample(const ModelFile& mf, const SchedulerConfig& sc, const SampleRequest& req) {
  CpuWeights w(mf);
  const bool cfg = req.guidance_scale > 1.f && !req.class_labels.empty();
  CpuExecutor ex(mf, w, cfg ? 2 * req.batch : req.batch, req.height, req.width);
  UNetFn unet = [&](const float* x, const float* t, const int32_t* l, int, float* out) { ex.run(x, t, l, out); };
  return to_image_01(run_sampler(sc, req, mf.graph.out_channels, unet, {}));
}

std::vector<float> gpu_sample(const ModelFile& mf, const CudaWeights& w, CudaContext& ctx, const SchedulerConfig& sc,
                              const SampleRequest& req, const CudaSamplerOptions& opt = {},
                              CudaSamplerStats* stats = nullptr, const ProgressFn& progress = {}) {
  return to_image_01(run_sampler_cuda(mf, w, ctx, sc, req, progress, opt, stats));
}

SampleRequest request_for(const Inputs& in, SamplerKind kind, int steps, float eta, uint64_t seed) {
  SampleRequest r;
  r.sampler = kind;
  r.steps = steps;
  r.eta = eta;
  r.seed = seed;
  r.batch = 2;
  r.height = in.h;
  r.width = in.w;
  r.channels = in.c;
  return r;
}

}  // namespace

TEST(CudaExecutor, Fp32ForwardMatchesCpu) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (const auto& dir : fixture_dirs()) {
    ModelFile mf = convert(dir, DType::F32);
    Inputs in = load_inputs(dir);
    auto ref = cpu_forward(mf, in), got = gpu_forward(mf, in, ctx);
    ASSERT_EQ(got.size(), ref.size());
    double rel = test::rel_l2(got.data(), ref.data(), ref.size());
    std::printf("[cuda fp32] %-28s rel_l2 %.3g\n", fs::path(dir).filename().c_str(), rel);
    EXPECT_LE(rel, 1e-5) << dir;
  }
}

TEST(CudaExecutor, HalfPrecisionForwardWithinBound) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (const auto& dir : fixture_dirs()) {
    Inputs in = load_inputs(dir);
    auto ref = cpu_forward(convert(dir, DType::F32), in);
    for (auto [dt, bound] : {std::pair{DType::F16, 1e-2}, std::pair{DType::BF16, 3e-2}}) {
      ModelFile mf = convert(dir, dt);
      auto got = gpu_forward(mf, in, ctx);
      double rel = test::rel_l2(got.data(), ref.data(), ref.size());
      std::printf("[cuda %s] %-28s rel_l2 %.3g\n", dtype_name(dt), fs::path(dir).filename().c_str(), rel);
      if (!(rel <= bound)) {
        CudaWeights w(mf);
        CudaExecutor ex(mf, w, ctx, in.n, in.h, in.w);
        CompareReport rep = ex.compare_with_cpu(in.x.data(), in.t.data(), in.labels.empty() ? nullptr : in.labels.data(), bound);
        ADD_FAILURE() << dir << " " << dtype_name(dt) << ": rel_l2 " << rel << " > " << bound << "; " << rep.summary();
      }
    }
  }
}

TEST(CudaExecutor, CompareModeFp32AllNodesAgree) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (const auto& dir : fixture_dirs()) {
    ModelFile mf = convert(dir, DType::F32);
    Inputs in = load_inputs(dir);
    CudaWeights w(mf);
    CudaExecutor ex(mf, w, ctx, in.n, in.h, in.w);
    CompareReport rep = ex.compare_with_cpu(in.x.data(), in.t.data(), in.labels.empty() ? nullptr : in.labels.data(), 1e-4);
    EXPECT_EQ(rep.nodes.size(), mf.graph.nodes.size()) << dir;
    EXPECT_EQ(rep.first_bad, -1) << dir << ": " << rep.summary();
  }
}

TEST(CudaExecutor, DebugModeRunsAndRejectsBadLabels) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/class_cond");
  ModelFile mf = convert(dir, DType::F32);
  Inputs in = load_inputs(dir);
  CudaWeights w(mf);
  CudaExecutor ex(mf, w, ctx, in.n, in.h, in.w);
  ex.debug = true;
  std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
  ex.run(in.x.data(), in.t.data(), in.labels.data(), out.data());
  auto ref = cpu_forward(mf, in);
  EXPECT_LE(test::rel_l2(out.data(), ref.data(), ref.size()), 1e-5);
  std::vector<int32_t> bad(size_t(in.n), 1000);
  EXPECT_THROW(ex.run(in.x.data(), in.t.data(), bad.data(), out.data()), Error);
  EXPECT_THROW(ex.run(in.x.data(), in.t.data(), nullptr, out.data()), Error);
}

TEST(CudaSampler, PhiloxDdimAndDdpmMatchCpuLoop) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/cifar_like");
  ModelFile mf = convert(dir, DType::F32);
  Inputs in = load_inputs(dir);
  CudaWeights w(mf);
  SchedulerConfig sc = sched_of(mf);
  struct R { SamplerKind k; int steps; float eta; double bound; };
  for (R c : {R{SamplerKind::Ddim, 10, 0.f, 1e-3}, R{SamplerKind::Ddim, 10, 0.5f, 1e-3}, R{SamplerKind::Ddpm, 20, 0.f, 5e-3}}) {
    SampleRequest req = request_for(in, c.k, c.steps, c.eta, 42);
    CudaSamplerStats st;
    auto got = gpu_sample(mf, w, ctx, sc, req, {}, &st);
    auto ref = cpu_sample(mf, sc, req);
    double err = test::max_abs_diff(got.data(), ref.data(), ref.size());
    std::printf("[cuda sampler] %s steps %d eta %.1f max_abs %.3g graph %d %s\n", to_string(c.k), c.steps, c.eta, err,
                int(st.graph_used), st.graph_fallback.c_str());
    EXPECT_LE(err, c.bound);
    EXPECT_TRUE(st.graph_used) << st.graph_fallback;
    EXPECT_EQ(st.steps, c.steps);
  }
}

TEST(CudaSampler, TorchRngReproducesDiffusersPipelines) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  int runs = 0;
  for (const auto& m : fs::directory_iterator(test::source_path("tests/fixtures/models"))) {
    if (!fs::is_directory(m.path() / "pipelines")) continue;
    ModelFile mf = convert(m.path().string(), DType::F32);
    CudaWeights w(mf);
    for (const auto& run : fs::directory_iterator(m.path() / "pipelines")) {
      nlohmann::json meta = nlohmann::json::parse(std::ifstream(run.path() / "meta.json"));
      SchedulerConfig sc = scheduler_config_from_json(meta["effective_scheduler_config"], "meta.json");
      SampleRequest req = test::pipeline_request(meta);
      for (bool stream_noise : {false, true}) {
        CudaSamplerOptions opt;
        if (stream_noise) opt.max_torch_noise_bytes = 0;  // exercise the per-step staging path
        CudaSamplerStats st;
        auto img = gpu_sample(mf, w, ctx, sc, req, opt, &st);
        auto want = read_npy((run.path() / "images.npy").string()).as_f32();
        ASSERT_EQ(img.size(), want.size());
        double err = test::max_abs_diff(img.data(), want.data(), want.size());
        std::printf("[cuda pipeline] %-16s streamed %d max_abs %.3g\n", run.path().filename().c_str(),
                    int(st.torch_noise_streamed), err);
        EXPECT_LE(err, req.sampler == SamplerKind::Ddim ? 1e-3 : 5e-3) << run.path();
      }
      ++runs;
    }
  }
  EXPECT_GE(runs, 3);
}

TEST(CudaSampler, ClassConditionalCfgMatchesCpuLoop) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/class_cond");
  ModelFile mf = convert(dir, DType::F32);
  Inputs in = load_inputs(dir);
  CudaWeights w(mf);
  SchedulerConfig sc = sched_of(mf);
  SampleRequest req = request_for(in, SamplerKind::Ddim, 8, 0.f, 7);
  req.class_labels = {1, 4};
  req.guidance_scale = 2.5f;
  req.null_class = mf.conditioning.null_class >= 0 ? mf.conditioning.null_class : mf.conditioning.num_classes - 1;
  auto got = gpu_sample(mf, w, ctx, sc, req);
  auto ref = cpu_sample(mf, sc, req);
  EXPECT_LE(test::max_abs_diff(got.data(), ref.data(), ref.size()), 1e-3);
}

TEST(CudaSampler, BatchOfEightEqualsBatchesOfOne) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/cifar_like");
  ModelFile mf = convert(dir, DType::F32);
  Inputs in = load_inputs(dir);
  CudaWeights w(mf);
  SchedulerConfig sc = sched_of(mf);
  SampleRequest req = request_for(in, SamplerKind::Ddim, 10, 0.5f, 99);
  req.batch = 8;
  auto all = gpu_sample(mf, w, ctx, sc, req);
  const size_t per = size_t(in.h) * in.w * in.c;
  for (uint32_t i : {0u, 3u, 7u}) {
    SampleRequest one = req;
    one.batch = 1;
    one.first_sample_index = i;
    auto img = gpu_sample(mf, w, ctx, sc, one);
    double err = test::max_abs_diff(img.data(), all.data() + i * per, per);
    EXPECT_LE(err, 1e-4) << "sample " << i;
  }
}

TEST(CudaSampler, GraphReplayEqualsEagerAndProgressWorks) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/cifar_like");
  for (DType dt : {DType::F32, DType::F16}) {
    ModelFile mf = convert(dir, dt);
    Inputs in = load_inputs(dir);
    CudaWeights w(mf);
    SchedulerConfig sc = sched_of(mf);
    SampleRequest req = request_for(in, SamplerKind::Ddpm, 12, 0.f, 5);
    CudaSamplerOptions eager;
    eager.use_cuda_graph = false;
    CudaSamplerStats sg, se;
    std::vector<int> seen;
    ProgressFn prog = [&](int step, int total) {
      EXPECT_EQ(total, 12);
      seen.push_back(step);
      return true;
    };
    auto a = run_sampler_cuda(mf, w, ctx, sc, req, prog, {}, &sg);
    auto b = run_sampler_cuda(mf, w, ctx, sc, req, {}, eager, &se);
    EXPECT_TRUE(sg.graph_used) << sg.graph_fallback;
    EXPECT_FALSE(se.graph_used);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << dtype_name(dt) << ": graph != eager";
    ASSERT_EQ(seen.size(), 12u);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(seen[size_t(i)], i + 1);
    // No precomputed embeddings: per-step timestep table path gives the same result.
    CudaSamplerOptions no_pre;
    no_pre.precompute_time_embeddings = false;
    auto c = run_sampler_cuda(mf, w, ctx, sc, req, {}, no_pre);
    EXPECT_LE(test::max_abs_diff(a.data(), c.data(), a.size()), dt == DType::F32 ? 1e-5 : 1e-2);
    // Cancellation after 3 steps.
    ProgressFn cancel = [](int step, int) { return step < 3; };
    try {
      run_sampler_cuda(mf, w, ctx, sc, req, cancel);
      ADD_FAILURE() << "not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
  }
}

// Every scheduler class on the GPU loop (one captured graph per model call, Heun's second calls and PNDM's extra
// calls included) against the CPU loop with the same Philox noise; graph replay equals eager launches exactly.
TEST(CudaSampler, EverySamplerMatchesCpuLoopAndGraphEqualsEager) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const std::string dir = test::source_path("tests/fixtures/models/cifar_like");
  ModelFile mf = convert(dir, DType::F32);
  Inputs in = load_inputs(dir);
  CudaWeights w(mf);
  const SchedulerConfig model_cfg = sched_of(mf);
  struct S { const char* name; bool karras; int steps; };
  for (S c : {S{"pndm", false, 8}, S{"dpmpp-2m", true, 10}, S{"dpmpp-2m-sde", true, 10}, S{"euler", false, 10},
              S{"euler-a", false, 10}, S{"heun", true, 6}, S{"unipc", false, 10}, S{"lcm", false, 4}, S{"ddim", false, 10}}) {
    const SchedulerConfig sc = select_sampler(model_cfg, c.name, c.karras, "test");
    SampleRequest req = request_for(in, sc.klass, c.steps, 0.f, 21);
    CudaSamplerStats sg, se;
    auto got = gpu_sample(mf, w, ctx, sc, req, {}, &sg);
    CudaSamplerOptions eager;
    eager.use_cuda_graph = false;
    auto eag = gpu_sample(mf, w, ctx, sc, req, eager, &se);
    auto ref = cpu_sample(mf, sc, req);
    const double err = test::max_abs_diff(got.data(), ref.data(), ref.size());
    std::printf("[cuda sampler] %-12s karras %d steps %d calls %d max_abs %.3g graph %d %s\n", c.name, int(c.karras),
                sg.steps, sg.model_calls, err, int(sg.graph_used), sg.graph_fallback.c_str());
    EXPECT_LE(err, 1e-3) << c.name;
    EXPECT_TRUE(sg.graph_used) << c.name << ": " << sg.graph_fallback;
    EXPECT_FALSE(sg.graph_capture_failed) << c.name;
    EXPECT_EQ(sg.steps, c.steps) << c.name;
    EXPECT_EQ(0, std::memcmp(got.data(), eag.data(), got.size() * sizeof(float))) << c.name << ": graph != eager";
  }
  // Torch RNG: Euler a draws every step; upfront and streamed uploads give the same image.
  const SchedulerConfig ea = select_sampler(model_cfg, "euler-a", false, "test");
  SampleRequest req = request_for(in, ea.klass, 10, 0.f, 3);
  req.rng = RngKind::Torch;
  CudaSamplerOptions streamed;
  streamed.max_torch_noise_bytes = 0;
  CudaSamplerStats st;
  auto a = gpu_sample(mf, w, ctx, ea, req);
  auto b = gpu_sample(mf, w, ctx, ea, req, streamed, &st);
  EXPECT_TRUE(st.torch_noise_streamed);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  auto ref = cpu_sample(mf, ea, req);
  EXPECT_LE(test::max_abs_diff(a.data(), ref.data(), ref.size()), 1e-3);
}
