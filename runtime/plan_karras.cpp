// Planners of the sigma ("Karras") schedulers: EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
// HeunDiscreteScheduler (two model calls per step), diffusers 0.27.2 step() for step()
// (tests/fixtures/samplers/README.md §D6-§D8). Their model input is x / sqrt(sigma^2 + 1) (finish_row).
#include <cmath>

#include "runtime/plan_internal.h"

namespace diffrt::plan_detail {
namespace {

// Predicted x0 at sigma `sg` (epsilon: x - sg*m; v: m*(-sg/sqrt(sg^2+1)) + x/(sg^2+1); sample: m).
Val x0_at(RowBuilder& b, PredictionType p, float sg) {
  switch (p) {
    case PredictionType::Epsilon: return b.sub(b.x(), b.mul(b.k(sg), b.m()));
    case PredictionType::VPrediction: {
      const float sq = f32(f32(sg * sg) + 1.0f);
      const float cm = f32(-sg / std::sqrt(sq));
      return b.add(b.mul(b.m(), b.k(cm)), b.div(b.x(), b.k(sq)));
    }
    case PredictionType::Sample: return b.m();
  }
  return b.m();
}

}  // namespace

void plan_euler(PlanCtx& x) {
  const std::vector<float>& sig = x.s.sigmas;
  for (int i = 0; i < x.calls; ++i) {
    const int e = x.entry(i);
    const float s = sig[size_t(e)];  // sigma_hat = sigma * (0 + 1) = sigma (s_churn is 0 in pipelines)
    RowBuilder b;
    const Val x0 = x0_at(b, x.c.prediction_type, s);
    const Val d = b.div(b.sub(b.x(), x0), b.k(s));
    const float dt = f32(sig[size_t(e + 1)] - s);
    b.set(b.x(), b.add(b.x(), b.mul(d, b.k(dt))));
    x.finish_row(b, i, 1);  // Euler draws its (unused) noise on every step
  }
}

void plan_euler_ancestral(PlanCtx& x) {
  const std::vector<float>& sig = x.s.sigmas;
  for (int i = 0; i < x.calls; ++i) {
    const int e = x.entry(i);
    const float s = sig[size_t(e)], st = sig[size_t(e + 1)];
    RowBuilder b;
    const Val x0 = x0_at(b, x.c.prediction_type, s);
    const float s2 = f32(s * s), t2 = f32(st * st);
    const float up = std::sqrt(f32(f32(t2 * f32(s2 - t2)) / s2));
    const float down = std::sqrt(f32(t2 - f32(up * up)));
    const Val d = b.div(b.sub(b.x(), x0), b.k(s));
    const Val prev = b.add(b.x(), b.mul(d, b.k(f32(down - s))));
    x.use_noise(b, i);
    b.set(b.x(), b.add(prev, b.mul(b.z(), b.k(up))));
    x.finish_row(b, i, 1);
  }
}

void plan_heun(PlanCtx& x) {
  const std::vector<float>& sig = x.s.sigmas;
  const bool clip = x.c.clip_sample;
  const float range = float(x.c.clip_sample_range);
  int der = -1, saved = -1;  // slots of prev_derivative and sample
  bool first_order = true;   // dt is None
  float dt = 0.0f;
  for (int i = 0; i < x.calls; ++i) {
    const int e = x.entry(i);
    RowBuilder b;
    if (first_order) {
      const float s = sig[size_t(e)], sn = sig[size_t(e + 1)];
      Val x0 = x0_at(b, x.c.prediction_type, s);
      if (clip) x0 = b.clamp(x0, range);
      const Val d = b.div(b.sub(b.x(), x0), b.k(s));
      dt = f32(sn - s);
      if (der < 0) der = x.alloc_slot();
      if (saved < 0) saved = x.alloc_slot();
      b.set(b.slot(der), d);
      b.set(b.slot(saved), b.x());
      b.set(b.x(), b.add(b.x(), b.mul(b.slot(der), b.k(dt))));
      first_order = false;
    } else {
      const float sn = sig[size_t(e)];  // sigma_next = sigmas[step_index]; the model saw sigma_input = sigma_next
      Val x0 = x0_at(b, x.c.prediction_type, sn);
      if (clip) x0 = b.clamp(x0, range);
      const Val d2 = b.div(b.sub(b.x(), x0), b.k(sn));
      const Val d = b.div(b.add(b.slot(der), d2), b.k(2.0f));
      b.set(b.x(), b.add(b.slot(saved), b.mul(d, b.k(dt))));
      first_order = true;
    }
    x.finish_row(b, i, 0);
  }
}

}  // namespace diffrt::plan_detail
