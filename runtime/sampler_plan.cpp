// The sampling plan (contract in sampler_plan.h): the shared parts (img2img slice, init row, legacy inpaint
// blend, next model input, progress) and the DDPM / DDIM rows; the other classes are in plan_*.cpp.
// Verified by tests/sampler_loop_test.cpp (every fixture loop replayed through the CPU step) and
// tests/sampler_test.cpp (DDPMPipeline / DDIMPipeline runs, unchanged from the fused DDPM/DDIM step).
#include "runtime/sampler_plan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "runtime/plan_internal.h"
#include "runtime/sampler_math.h"

namespace diffrt {

using namespace plan_detail;
using K = SchedulerClass;

namespace plan_detail {

int PlanCtx::alloc_slot() {
  for (int s = 1; s < step_reg::kNumPersistent; ++s)
    if (!slot_used[size_t(s)]) {
      slot_used[size_t(s)] = true;
      plan.num_slots = std::max(plan.num_slots, s + 1);
      return s;
    }
  fail(ErrorCode::Internal, "sampler plan: out of persistent slots");
}

void PlanCtx::free_slot(int s) {
  if (s >= 1 && s < step_reg::kNumPersistent) slot_used[size_t(s)] = false;
}

void PlanCtx::use_noise(RowBuilder& b, int i) {
  int drawn = 0;
  for (uint8_t d : plan.draws) drawn += d;
  b.set_noise(uint32_t(i), drawn);  // the draw index counts the draws of the calls before this one
}

Vp vp_of(float sigma) {
  Vp v;
  v.alpha = f32(1.0f / std::sqrt(f32(f32(sigma * sigma) + 1.0f)));
  v.sigma = f32(sigma * v.alpha);
  v.lambda = f32(smath::log_f(v.alpha) - smath::log_f(v.sigma));
  return v;
}

void PlanCtx::finish_row(RowBuilder& b, int i, uint8_t draws) {
  const int e = entry(i);
  if (req.legacy_inpaint_blend) {
    // StableDiffusionInpaintPipeline (4-channel UNet): x = (1 - mask) * proper + mask * x.
    Val proper;
    if (i == calls - 1) {
      proper = b.img();
    } else {
      const NoiseMix m = add_noise_at(c, tables, s, e + 1);
      proper = m.sigma_family ? b.add(b.img(), b.mul(b.noi(), b.k(m.b)))
                              : b.add(b.mul(b.k(m.a), b.img()), b.mul(b.k(m.b), b.noi()));
    }
    const Val keep = b.mul(b.sub(b.k(1.0f), b.mask()), proper);
    b.set(b.x(), b.add(keep, b.mul(b.mask(), b.x())));
    plan.reads_image = plan.reads_init_noise = plan.reads_mask = true;
  }
  if (i + 1 < calls) {
    const float d = s.scale_divisor[size_t(e + 1)];
    // scale_model_input: sample / sqrt(sigma^2 + 1) for the Euler family, the identity otherwise.
    if (c.klass == K::EulerDiscrete || c.klass == K::EulerAncestral || c.klass == K::Heun) b.set_model_input(b.div(b.x(), b.k(d)));
    else b.set_model_input(b.x());
  }
  plan.rows.push_back(b.finish());
  plan.draws.push_back(draws);
}

}  // namespace plan_detail

namespace {

void plan_init(PlanCtx& x, const Img2ImgStart* st) {
  RowBuilder b;
  const SamplerPlan& p = x.plan;
  if (x.req.start_from_image) {
    // add_noise(image, noise, timesteps[begin]) by family; img2img never multiplies by init_noise_sigma.
    const NoiseMix m = add_noise_at(x.c, x.tables, x.s, st->begin_index);
    if (m.sigma_family) b.set(b.x(), b.add(b.img(), b.mul(b.noi(), b.k(m.b))));
    else b.set(b.x(), b.add(b.mul(b.k(m.a), b.img()), b.mul(b.k(m.b), b.noi())));
    x.plan.reads_image = true;
  } else {
    b.set(b.x(), b.mul(b.noi(), b.k(p.init_noise_sigma)));  // latents * init_noise_sigma
  }
  x.plan.reads_init_noise = true;
  const float d = x.s.scale_divisor[size_t(x.begin)];
  if (x.c.klass == K::EulerDiscrete || x.c.klass == K::EulerAncestral || x.c.klass == K::Heun)
    b.set_model_input(b.div(b.x(), b.k(d)));
  else
    b.set_model_input(b.x());
  x.plan.init = b.finish();
}

void progress(PlanCtx& x) {
  SamplerPlan& p = x.plan;
  const int n = x.calls;
  p.progress_after.assign(size_t(n), 0);
  switch (x.c.klass) {
    case K::Heun:
      // The pipeline's bar moves on every second call and on the last one.
      for (int i = 0; i < n; ++i) p.progress_after[size_t(i)] = (i + 1) / 2 + (i == n - 1 ? (n % 2) : 0);
      break;
    case K::Pndm:
      if (x.s.pndm_prk_calls > 0 && x.begin == 0) {
        for (int i = 0; i < n; ++i) p.progress_after[size_t(i)] = i < 12 ? (i + 1) / 4 : 3 + (i - 11);
      } else {
        // PLMS: the first two calls make the first step (the second recomputes it from the first timestep).
        for (int i = 0; i < n; ++i) p.progress_after[size_t(i)] = n == 1 ? 1 : i;
      }
      break;
    default:
      for (int i = 0; i < n; ++i) p.progress_after[size_t(i)] = i + 1;
      break;
  }
  p.steps = n ? p.progress_after.back() : 0;
}

}  // namespace

namespace plan_detail {

void plan_ddpm_ddim(PlanCtx& x) {
  const bool ddim = x.c.klass == K::Ddim;
  const int N = x.s.num_inference_steps;
  for (int i = 0; i < x.calls; ++i) {
    const int64_t t = int64_t(x.s.timesteps[size_t(x.entry(i))]);
    const StepCoeffs k = step_coeffs(x.c, x.tables, x.c.klass, N, t, x.req.eta);
    RowBuilder b;
    // x0 (and DDIM's epsilon) exactly as the fused DDPM/DDIM step (kernels/scheduler_step) computes them.
    Val x0, eps = b.m();
    switch (x.c.prediction_type) {
      case PredictionType::Epsilon:
        x0 = b.div(b.sub(b.x(), b.mul(b.k(k.sqrt_beta_prod_t), b.m())), b.k(k.sqrt_alpha_prod_t));
        break;
      case PredictionType::Sample:
        x0 = b.m();
        if (ddim) eps = b.div(b.sub(b.x(), b.mul(b.k(k.sqrt_alpha_prod_t), b.m())), b.k(k.sqrt_beta_prod_t));
        break;
      case PredictionType::VPrediction:
        x0 = b.sub(b.mul(b.k(k.sqrt_alpha_prod_t), b.x()), b.mul(b.k(k.sqrt_beta_prod_t), b.m()));
        if (ddim) eps = b.add(b.mul(b.k(k.sqrt_alpha_prod_t), b.m()), b.mul(b.k(k.sqrt_beta_prod_t), b.x()));
        break;
    }
    if (x.c.thresholding) x0 = b.thresh(x0);
    else if (x.c.clip_sample) x0 = b.clamp(x0, float(x.c.clip_sample_range));
    Val out;
    if (!ddim) {
      out = b.add(b.mul(b.k(k.x0_coeff), x0), b.mul(b.k(k.xt_coeff), b.x()));
    } else {
      if (x.req.use_clipped_model_output)
        eps = b.div(b.sub(b.x(), b.mul(b.k(k.sqrt_alpha_prod_t), x0)), b.k(k.sqrt_beta_prod_t));
      out = b.add(b.mul(b.k(k.sqrt_alpha_prod_prev), x0), b.mul(b.k(k.dir_coeff), eps));
    }
    if (k.add_noise) {
      x.use_noise(b, i);
      Val term;
      const bool learned_split = x.req.model_predicts_variance;
      if (ddim) {
        term = b.mul(b.k(k.std_dev_t), b.z());
      } else if (x.c.variance_type == VarianceType::Learned && !x.c.variance_type_null && learned_split) {
        term = b.mul(b.sqrt(b.v()), b.z());
      } else if (x.c.variance_type == VarianceType::LearnedRange && !x.c.variance_type_null && learned_split) {
        const Val f = b.div(b.add(b.v(), b.k(1.0f)), b.k(2.0f));
        const Val logv = b.add(b.mul(f, b.k(k.log_var_max)), b.mul(b.sub(b.k(1.0f), f), b.k(k.log_var_min)));
        term = b.mul(b.exp(b.mul(b.k(0.5f), logv)), b.z());
      } else {
        term = b.mul(b.k(k.noise_std), b.z());
      }
      out = b.add(out, term);
    }
    b.set(b.x(), out);
    x.finish_row(b, i, k.add_noise ? 1 : 0);
  }
}

}  // namespace plan_detail

int SamplerPlan::total_draws() const {
  int n = 0;
  for (uint8_t d : draws) n += d;
  return n;
}

SamplerPlan make_sampler_plan(const SchedulerConfig& c, const PlanRequest& r) {
  validate_scheduler_config(c, std::string(scheduler_class_name(c.klass)) + " config");
  if (!(r.eta >= 0.0f && r.eta <= 1.0f)) fail(ErrorCode::InvalidArgument, "eta = " + std::to_string(r.eta) + " must be in [0, 1]");
  if (r.eta != 0.0f && c.klass != K::Ddim)
    fail(ErrorCode::InvalidArgument, std::string("eta applies to ddim only (this sampler is ") + scheduler_short_name(c.klass) + ")");
  if (r.use_clipped_model_output && c.klass != K::Ddim)
    fail(ErrorCode::InvalidArgument, "use_clipped_model_output applies to ddim only");
  if ((r.start_from_image || r.legacy_inpaint_blend) && !r.img2img)
    fail(ErrorCode::Internal, "sampler plan: an image start or inpaint blend needs img2img");
  const int steps = r.steps ? r.steps : default_steps(c.klass);
  const ScheduleTables tables = compute_schedule(c);
  SamplerPlan plan;
  plan.klass = c.klass;
  plan.schedule = class_schedule(c, tables, steps);
  plan.init_noise_sigma = plan.schedule.init_noise_sigma;
  plan.thresh_ratio = float(c.dynamic_thresholding_ratio);
  plan.thresh_max = float(c.sample_max_value);
  PlanCtx x{c, r, tables, plan.schedule, plan};
  Img2ImgStart st;
  if (r.img2img) {
    st = img2img_start(c, tables, plan.schedule, r.strength);
    x.begin = st.begin_index;
  }
  plan.begin = x.begin;
  x.calls = int(plan.schedule.timesteps.size()) - x.begin;
  if (x.calls < 1) fail(ErrorCode::InvalidArgument, "the request runs no model call");
  for (int i = 0; i < x.calls; ++i) {
    const double t = plan.schedule.timesteps[size_t(x.entry(i))];
    plan.timestep_values.push_back(t);
    plan.model_timesteps.push_back(float(t));  // the UNet's timestep.float()
  }
  plan_init(x, &st);
  switch (c.klass) {
    case K::Ddpm:
    case K::Ddim: plan_ddpm_ddim(x); break;
    case K::Pndm: plan_pndm(x); break;
    case K::DpmSolverMultistep: plan_dpm(x); break;
    case K::EulerDiscrete: plan_euler(x); break;
    case K::EulerAncestral: plan_euler_ancestral(x); break;
    case K::Heun: plan_heun(x); break;
    case K::UniPC: plan_unipc(x); break;
    case K::Lcm: plan_lcm(x); break;
  }
  if (int(plan.rows.size()) != x.calls) fail(ErrorCode::Internal, "sampler plan: row count mismatch");
  progress(x);
  return plan;
}

}  // namespace diffrt
