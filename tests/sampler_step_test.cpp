// The generic sampler step and plans beyond the diffusers fixtures: DDPM/DDIM through the generic step are
// bit-identical to the fused DDPM/DDIM step they replace (every prediction / variance type, clipping, eta, CFG);
// DiT's [cond; uncond] CFG order; Philox batch independence for the noisy samplers; progress counted in user steps
// (Heun: two calls per step) and cancellation; every class plans within the row limits over a grid of options;
// row validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "kernels/common/philox.h"
#include "kernels/sampler_step/sampler_step.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "model/scheduler_config.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"
#include "runtime/step_program.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

// Per-row-independent fake model: out = 0.2*x + t/5000 + 0.03*label (+ tanh(x) in the variance channels).
UNetFn fake_unet(int h, int w, int c, int cm) {
  return [=](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
    const size_t pix = size_t(h) * w;
    for (int n = 0; n < bm; ++n)
      for (size_t p = 0; p < pix; ++p)
        for (int ch = 0; ch < cm; ++ch) {
          const float xv = x[(n * pix + p) * c + (ch % c)];
          out[(n * pix + p) * cm + ch] =
              ch < c ? 0.2f * xv + t[n] / 5000.0f + (labels ? 0.03f * float(labels[n]) : 0.f) : std::tanh(xv);
        }
  };
}

// The loop as it was before the generic step: the fused DDPM/DDIM step with StepCoeffs, Philox noise.
std::vector<float> legacy_loop(const SchedulerConfig& cfg, const SampleRequest& r, int cm) {
  const int B = r.batch, H = r.height, W = r.width, C = r.channels, Bm = model_batch(r);
  const size_t per = size_t(H) * W * C;
  const SamplingPlan plan = make_sampling_plan(cfg, r.sampler, effective_steps(r), r.eta);
  std::vector<float> x(size_t(B) * per), model_in(size_t(Bm) * per), model_out(size_t(Bm) * H * W * cm);
  for (int n = 0; n < B; ++n)
    fill_philox_normal(r.seed, r.first_sample_index + uint32_t(n), 0, philox::kTagInitial, H, W, C, x.data() + n * per);
  for (int n = 0; n < Bm; ++n) std::copy(x.begin() + (n % B) * per, x.begin() + (n % B + 1) * per, model_in.begin() + n * per);
  const std::vector<int32_t> labels = model_labels(r);
  SchedulerStepParams p = make_step_params(cfg, r, cm);
  p.x = x.data();
  p.model_in = model_in.data();
  p.model_out = model_out.data();
  UNetFn unet = fake_unet(H, W, C, cm);
  std::vector<float> tv(static_cast<size_t>(Bm));
  for (size_t i = 0; i < plan.coeffs.size(); ++i) {
    std::fill(tv.begin(), tv.end(), float(plan.coeffs[i].timestep));
    unet(model_in.data(), tv.data(), labels.empty() ? nullptr : labels.data(), Bm, model_out.data());
    p.k = plan.coeffs[i];
    p.step_index = uint32_t(i);
    p.noise_source = p.k.add_noise ? NoiseSource::Philox : NoiseSource::None;
    scheduler_step_ref(p);
  }
  return x;
}

SchedulerConfig parse(const std::string& text) { return scheduler_config_from_json(json::parse(text), "test"); }

}  // namespace

TEST(SamplerStep, DdpmDdimBitIdenticalToTheFusedStep) {
  int cases = 0;
  for (const char* kind : {"DDPMScheduler", "DDIMScheduler"})
    for (const char* pred : {"epsilon", "sample", "v_prediction"})
      for (const char* var : {"fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"})
        for (int variant = 0; variant < 4; ++variant) {
          const bool ddim = std::string(kind) == "DDIMScheduler";
          if (ddim && std::string(var) != "fixed_small") continue;
          json j = {{"_class_name", kind}, {"prediction_type", pred}, {"clip_sample", variant == 1},
                    {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085}, {"beta_end", 0.012},
                    {"thresholding", variant == 3}, {"sample_max_value", 2.5}};
          if (!ddim) j["variance_type"] = var;
          const SchedulerConfig cfg = scheduler_config_from_json(j, "test");
          SampleRequest r;
          r.sampler = cfg.klass;
          r.steps = 7;
          r.seed = 11 + cases;
          r.batch = 2; r.height = 3; r.width = 5; r.channels = 3;
          if (ddim) { r.eta = variant == 2 ? 0.7f : 0.0f; r.use_clipped_model_output = variant == 1; }
          if (variant == 2) { r.class_labels = {1, 4}; r.guidance_scale = 3.5f; r.null_class = 9; }
          const bool learned = std::string(var) == "learned" || std::string(var) == "learned_range";
          const int cm = learned ? 6 : 3;
          SCOPED_TRACE(std::string(kind) + " " + pred + " " + var + " variant " + std::to_string(variant));
          const std::vector<float> a = legacy_loop(cfg, r, cm);
          const std::vector<float> b = run_sampler(cfg, r, cm, fake_unet(3, 5, 3, cm), {});
          ASSERT_EQ(a.size(), b.size());
          EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "differs from the fused step";
          ++cases;
        }
  EXPECT_EQ(cases, 72);
}

TEST(SamplerStep, DitCfgOrderIsTheSameGuidance) {
  // [cond; uncond] model batch with labels [y; null] equals [uncond; cond] with [null; y] bit for bit.
  const SchedulerConfig cfg = parse(R"({"_class_name": "DPMSolverMultistepScheduler"})");
  SampleRequest r;
  r.sampler = cfg.klass;
  r.steps = 6;
  r.batch = 2; r.height = 4; r.width = 4; r.channels = 4;
  r.class_labels = {3, 7};
  r.null_class = 1000;
  r.guidance_scale = 4.0f;
  std::vector<std::vector<int32_t>> seen;
  auto unet = [&](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
    seen.emplace_back(labels, labels + bm);
    fake_unet(4, 4, 4, 8)(x, t, labels, bm, out);
  };
  const std::vector<float> a = run_sampler(cfg, r, 8, unet, {});
  EXPECT_EQ(seen.front(), (std::vector<int32_t>{1000, 1000, 3, 7}));
  r.cfg_order = CfgOrder::CondFirst;
  seen.clear();
  const std::vector<float> b = run_sampler(cfg, r, 8, unet, {});
  EXPECT_EQ(seen.front(), (std::vector<int32_t>{3, 7, 1000, 1000}));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(SamplerStep, PhiloxSampleIndependentOfBatchPosition) {
  for (const char* name : {"euler-a", "dpmpp-2m-sde", "lcm", "ddpm", "heun", "pndm"}) {
    SCOPED_TRACE(name);
    const SchedulerConfig cfg = select_sampler(parse(R"({"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "beta_end": 0.012, "skip_prk_steps": true, "steps_offset": 1})"), name, false, "t");
    SampleRequest r;
    r.sampler = cfg.klass;
    r.steps = 5;
    r.seed = 77;
    r.batch = 3; r.height = 4; r.width = 3; r.channels = 2;
    r.class_labels = {2, 5, 1};
    r.null_class = 0;
    r.guidance_scale = 2.0f;
    const std::vector<float> all = run_sampler(cfg, r, 2, fake_unet(4, 3, 2, 2), {});
    const size_t per = size_t(4) * 3 * 2;
    for (int i = 0; i < 3; ++i) {
      SampleRequest one = r;
      one.batch = 1;
      one.first_sample_index = uint32_t(i);
      one.class_labels = {r.class_labels[size_t(i)]};
      const std::vector<float> x = run_sampler(cfg, one, 2, fake_unet(4, 3, 2, 2), {});
      EXPECT_EQ(std::memcmp(x.data(), all.data() + i * per, per * sizeof(float)), 0) << "sample " << i;
    }
  }
}

TEST(SamplerStep, ProgressCountsUserStepsAndCancels) {
  const SchedulerConfig model = parse(R"({"_class_name": "PNDMScheduler", "skip_prk_steps": true})");
  for (const auto& [name, calls] : std::vector<std::pair<std::string, int>>{{"heun", 19}, {"pndm", 11}, {"euler", 10}}) {
    SCOPED_TRACE(name);
    const SchedulerConfig cfg = select_sampler(model, name, false, "t");
    SampleRequest r;
    r.sampler = cfg.klass;
    r.steps = 10;
    r.height = r.width = 2; r.channels = 1;
    int model_calls = 0;
    std::vector<int> steps;
    auto unet = [&](const float* x, const float* t, const int32_t* l, int bm, float* out) {
      ++model_calls;
      fake_unet(2, 2, 1, 1)(x, t, l, bm, out);
    };
    run_sampler(cfg, r, 1, unet, [&](int step, int total) {
      EXPECT_EQ(total, 10);
      steps.push_back(step);
      return true;
    });
    EXPECT_EQ(model_calls, calls);
    ASSERT_EQ(steps.size(), 10u);
    for (int k = 0; k < 10; ++k) EXPECT_EQ(steps[size_t(k)], k + 1);
    try {
      run_sampler(cfg, r, 1, unet, [](int step, int) { return step < 3; });
      ADD_FAILURE() << "not cancelled";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Cancelled);
    }
  }
}

TEST(SamplerStep, EveryClassPlansWithinTheRowLimits) {
  int plans = 0;
  const char* classes[] = {"DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                           "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                           "UniPCMultistepScheduler", "LCMScheduler"};
  for (const char* cls : classes)
    for (const char* pred : {"epsilon", "v_prediction", "sample"})
      for (int opt = 0; opt < 4; ++opt) {
        json j = {{"_class_name", cls}, {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085}, {"beta_end", 0.012}};
        const SchedulerClass k = scheduler_config_from_json(j, "t").klass;
        if (std::string(pred) == "sample" && (k == SchedulerClass::Pndm || k == SchedulerClass::EulerAncestral)) continue;
        j["prediction_type"] = pred;
        if (scheduler_class_takes(k, "thresholding")) j["thresholding"] = bool(opt & 1);
        if (scheduler_class_takes(k, "solver_order")) j["solver_order"] = 3;
        if (scheduler_class_takes(k, "use_karras_sigmas")) j["use_karras_sigmas"] = bool(opt & 2);
        if (k == SchedulerClass::DpmSolverMultistep && (opt & 2)) j["solver_type"] = "heun";
        if (k == SchedulerClass::UniPC && (opt & 2)) j["solver_type"] = "bh1";
        if (k == SchedulerClass::Pndm) j["skip_prk_steps"] = bool(opt & 1);
        const SchedulerConfig c = scheduler_config_from_json(j, "t");
        for (int n : {1, 2, 3, 4, 10, 25})
          for (int blend = 0; blend < 2; ++blend) {
            if (k == SchedulerClass::Pndm && !c.skip_prk_steps && n < 4) continue;
            if (k == SchedulerClass::Lcm && n > 50) continue;
            SCOPED_TRACE(std::string(cls) + " " + pred + " opt " + std::to_string(opt) + " n " + std::to_string(n));
            PlanRequest pr;
            pr.steps = n;
            pr.model_predicts_variance = true;
            if (blend && n >= 2) {
              pr.img2img = true;
              pr.strength = 0.75;
              pr.start_from_image = true;
              pr.legacy_inpaint_blend = true;
            }
            SamplerPlan p;
            ASSERT_NO_THROW(p = make_sampler_plan(c, pr));
            for (const StepRow& row : p.rows) EXPECT_EQ(step_row_problem(row), "");
            EXPECT_EQ(int(p.draws.size()), p.calls());
            EXPECT_EQ(p.progress_after.back(), p.steps);
            ++plans;
          }
      }
  EXPECT_GT(plans, 500);
}

TEST(SamplerStep, RowValidation) {
  RowBuilder b;
  b.set(b.x(), b.add(b.x(), b.mul(b.k(2.0f), b.m())));
  StepRow r = b.finish();
  EXPECT_EQ(step_row_problem(r), "");
  StepRow bad = r;
  bad.ins[0].a = 40;  // constant 8 of 1
  EXPECT_NE(step_row_problem(bad), "");
  bad = r;
  bad.read_mask = 0;
  EXPECT_NE(step_row_problem(bad), "");
  bad = r;
  bad.ins[0].dst = step_reg::kM;
  EXPECT_NE(step_row_problem(bad), "");
  SamplerStepParams p;
  p.row = &r;
  p.b = 1; p.h = 2; p.w = 2; p.c = 1; p.cm = 1;
  std::vector<float> x(4, 1.0f), mo(4, 0.5f);
  p.slots[0] = x.data();
  EXPECT_THROW(sampler_step_ref(p), Error);  // model_out missing
  p.model_out = mo.data();
  sampler_step_ref(p);
  EXPECT_EQ(x[0], 1.0f + 2.0f * 0.5f);
}
