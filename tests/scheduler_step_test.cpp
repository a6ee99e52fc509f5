// scheduler_step_ref vs diffusers 0.27.2 DDPMScheduler.step / DDIMScheduler.step on a grid of
// configs (prediction, variance type, clip/threshold, eta, use_clipped_model_output, schedules,
// spacings, N in {1..1000}); plus CFG folding, Philox noise, model_in output and validation.
// Fixture tensors are NCHW [2, C, 4, 5]; the kernel runs NHWC, so the test transposes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "kernels/common/philox.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "base/npy.h"
#include "runtime/rng.h"
#include "runtime/schedule.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

const test::FixtureDir fx{"scheduler"};

struct Tensor4 { std::vector<float> nhwc; int n = 0, c = 0, h = 0, w = 0; };

Tensor4 load_nchw_as_nhwc(const std::string& file) {
  NpyArray a = read_npy(fx(file));
  EXPECT_EQ(a.shape.size(), 4u);
  Tensor4 t;
  t.n = int(a.shape[0]); t.c = int(a.shape[1]); t.h = int(a.shape[2]); t.w = int(a.shape[3]);
  std::vector<float> v = a.as_f32();
  t.nhwc.resize(v.size());
  const int hw = t.h * t.w;
  for (int n = 0; n < t.n; ++n)
    for (int c = 0; c < t.c; ++c)
      for (int p = 0; p < hw; ++p) t.nhwc[(size_t(n) * hw + p) * t.c + c] = v[(size_t(n) * t.c + c) * hw + p];
  return t;
}

SchedulerStepParams params_from(const SchedulerConfig& c, SamplerKind kind) {
  SchedulerStepParams p;
  p.kind = kind;
  p.prediction = c.prediction_type;
  p.variance = c.variance_type;
  p.clip_sample = c.clip_sample;
  p.clip_sample_range = float(c.clip_sample_range);
  p.thresholding = c.thresholding;
  p.dynamic_thresholding_ratio = float(c.dynamic_thresholding_ratio);
  p.sample_max_value = float(c.sample_max_value);
  return p;
}

}  // namespace

TEST(SchedulerStep, MatchesDiffusersSteps) {
  json m = fx.manifest();
  std::map<std::string, Tensor4> in;
  for (auto& [k, v] : m["step_inputs"].items()) in[k] = load_nchw_as_nhwc(v.get<std::string>());
  double worst_prev = 0, worst_x0 = 0;
  std::string worst_name;
  int cases = 0;
  for (const json& s : m["steps"]) {
    const std::string name = s["name"].get<std::string>() + "@" + std::to_string(s["step_index"].get<int>());
    SCOPED_TRACE(name);
    SchedulerConfig cfg = scheduler_config_from_json(s["config"], name);
    const SamplerKind kind = s["kind"] == "ddpm" ? SamplerKind::Ddpm : SamplerKind::Ddim;
    const int N = s["N"];
    const float eta = s["eta"];
    ScheduleTables tab = compute_schedule(cfg);
    std::vector<int64_t> ts = inference_timesteps(cfg, N);
    const int64_t t = ts[size_t(s["step_index"].get<int>())];
    ASSERT_EQ(t, s["timestep"].get<int64_t>());

    Tensor4 x = in[s["x"]], mo = in[s["model_out"]], noise = in["noise"];
    Tensor4 want_prev = load_nchw_as_nhwc(s["prev_sample"]), want_x0 = load_nchw_as_nhwc(s["pred_x0"]);
    std::vector<float> x0(x.nhwc.size());
    SchedulerStepParams p = params_from(cfg, kind);
    p.model_out = mo.nhwc.data();
    p.x = x.nhwc.data();
    p.noise = noise.nhwc.data();
    p.pred_x0 = x0.data();
    p.b = x.n; p.h = x.h; p.w = x.w; p.c = x.c; p.cm = mo.c;
    p.use_clipped_model_output = s["use_clipped_model_output"];
    p.k = step_coeffs(cfg, tab, kind, N, t, eta);
    p.noise_source = p.k.add_noise ? NoiseSource::Buffer : NoiseSource::None;
    scheduler_step_ref(p);
    const size_t n = x.nhwc.size();
    double e_prev = test::max_abs_diff(x.nhwc.data(), want_prev.nhwc.data(), n);
    double e_x0 = test::max_abs_diff(x0.data(), want_x0.nhwc.data(), n);
    EXPECT_LE(e_prev, 1e-5);
    EXPECT_LE(e_x0, 1e-5);
    if (e_prev > worst_prev) { worst_prev = e_prev; worst_name = name; }
    worst_x0 = std::max(worst_x0, e_x0);
    ++cases;
  }
  std::printf("[parity] %d diffusers steps: worst |prev_sample diff| %.3g (%s), worst |pred_x0 diff| %.3g\n",
              cases, worst_prev, worst_name.c_str(), worst_x0);
  EXPECT_GT(cases, 60);
}

TEST(SchedulerStep, QuantileMatchesTorchLinear) {
  std::vector<float> v = {4, 1, 3, 2};
  EXPECT_FLOAT_EQ(quantile_linear(v.data(), 4, 0.5f), 2.5f);
  std::vector<float> w(101);
  for (int i = 0; i <= 100; ++i) w[size_t(i)] = float(100 - i);
  EXPECT_NEAR(quantile_linear(w.data(), 101, 0.995f), 99.5f, 1e-4);
  std::vector<float> one = {7.f};
  EXPECT_EQ(quantile_linear(one.data(), 1, 0.995f), 7.f);
}

// CFG folded into the step equals a step on the pre-guided output; variance from the cond half.
TEST(SchedulerStep, CfgMatchesPreGuidedOutput) {
  const int B = 2, H = 3, W = 4, C = 3, Cm = 2 * C;
  const size_t hw = size_t(H) * W;
  SchedulerConfig cfg;
  cfg.variance_type = VarianceType::LearnedRange;
  ScheduleTables tab = compute_schedule(cfg);
  TorchGenerator g(9);
  std::vector<float> out2 = g.randn(2 * B * hw * Cm), x = g.randn(B * hw * C), x_ref = x;
  for (size_t i = 0; i < out2.size(); ++i)
    if (i % Cm >= size_t(C)) out2[i] = std::tanh(out2[i]);
  const float s = 4.0f;
  std::vector<float> guided(B * hw * Cm);
  for (int n = 0; n < B; ++n)
    for (size_t i = 0; i < hw; ++i)
      for (int ch = 0; ch < Cm; ++ch) {
        float u = out2[(n * hw + i) * Cm + ch], c = out2[((B + n) * hw + i) * Cm + ch];
        guided[(n * hw + i) * Cm + ch] = ch < C ? u + s * (c - u) : c;
      }
  std::vector<float> model_in(2 * B * hw * C, -1.f);
  SchedulerStepParams p = params_from(cfg, SamplerKind::Ddpm);
  p.b = B; p.h = H; p.w = W; p.c = C; p.cm = Cm;
  p.k = step_coeffs(cfg, tab, SamplerKind::Ddpm, 50, 500, 0.f);
  p.noise_source = NoiseSource::Philox;
  p.seed = 77;
  p.cfg = true; p.guidance_scale = s;
  p.model_out = out2.data(); p.x = x.data(); p.model_in = model_in.data();
  scheduler_step_ref(p);
  p.cfg = false; p.model_out = guided.data(); p.x = x_ref.data(); p.model_in = nullptr;
  scheduler_step_ref(p);
  EXPECT_EQ(x, x_ref);
  for (int half = 0; half < 2; ++half)
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(model_in[half * x.size() + i], x[i]);
}

// Philox noise inside the step equals the same noise passed as a buffer (NCHW element index).
TEST(SchedulerStep, PhiloxNoiseEqualsBuffer) {
  const int B = 3, H = 5, W = 7, C = 3;
  const size_t per = size_t(H) * W * C;
  SchedulerConfig cfg;
  ScheduleTables tab = compute_schedule(cfg);
  TorchGenerator g(1);
  std::vector<float> out = g.randn(B * per), x = g.randn(B * per), x2 = x, noise(B * per);
  for (int n = 0; n < B; ++n) fill_philox_normal(42, 10 + n, 3, philox::kTagStep, H, W, C, noise.data() + n * per);
  SchedulerStepParams p = params_from(cfg, SamplerKind::Ddim);
  p.b = B; p.h = H; p.w = W; p.c = C; p.cm = C;
  p.k = step_coeffs(cfg, tab, SamplerKind::Ddim, 20, 500, 0.8f);
  p.model_out = out.data();
  p.x = x.data(); p.noise_source = NoiseSource::Philox; p.seed = 42; p.sample_index_base = 10; p.step_index = 3;
  scheduler_step_ref(p);
  p.x = x2.data(); p.noise_source = NoiseSource::Buffer; p.noise = noise.data();
  scheduler_step_ref(p);
  EXPECT_EQ(x, x2);
}

TEST(SchedulerStep, ValidationNamesTheField) {
  SchedulerConfig cfg;
  ScheduleTables tab = compute_schedule(cfg);
  std::vector<float> buf(1000);
  auto base = [&] {
    SchedulerStepParams p = params_from(cfg, SamplerKind::Ddpm);
    p.b = 1; p.h = 2; p.w = 2; p.c = 3; p.cm = 3;
    p.model_out = buf.data(); p.x = buf.data() + 100;
    p.k = step_coeffs(cfg, tab, SamplerKind::Ddpm, 10, 900, 0.f);
    p.noise_source = NoiseSource::Philox;
    return p;
  };
  auto expect_bad = [&](SchedulerStepParams p, const char* needle) {
    try {
      scheduler_step_ref(p);
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  { auto p = base(); p.cm = 4; expect_bad(p, "cm=4"); }
  { auto p = base(); p.variance = VarianceType::Learned; expect_bad(p, "2*C"); }
  { auto p = base(); p.noise_source = NoiseSource::None; expect_bad(p, "noise_source"); }
  { auto p = base(); p.noise_source = NoiseSource::Buffer; expect_bad(p, "noise is null"); }
  { auto p = base(); p.model_out = nullptr; expect_bad(p, "model_out"); }
  { auto p = base(); p.h = 0; expect_bad(p, "h=0"); }
  // t == 0 adds no noise, so no source is needed.
  SchedulerStepParams p = base();
  p.k = step_coeffs(cfg, tab, SamplerKind::Ddpm, 10, 0, 0.f);
  EXPECT_FALSE(p.k.add_noise);
  p.noise_source = NoiseSource::None;
  EXPECT_NO_THROW(scheduler_step_ref(p));
  // DDIM eta < 0 rejected when computing coefficients.
  EXPECT_THROW(step_coeffs(cfg, tab, SamplerKind::Ddim, 10, 900, -0.5f), Error);
}
