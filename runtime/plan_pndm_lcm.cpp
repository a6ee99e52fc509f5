// Planners of PNDMScheduler (PLMS with the duplicated second call; PRK warm-up of 12 calls) and LCMScheduler,
// diffusers 0.27.2 step() for step() (tests/fixtures/samplers/README.md §D4, §D10). PNDM's counter follows the
// calls actually made, so an img2img slice reproduces diffusers' counter quirk.
#include <cmath>
#include <string>
#include <vector>

#include "runtime/plan_internal.h"

namespace diffrt::plan_detail {
namespace {

// PNDM _get_prev_sample(sample, t, tp, e) (formula (9) of the PNDM paper), written into X.
void pndm_prev(PlanCtx& x, RowBuilder& b, Val sample, int64_t t, int64_t tp, Val e) {
  const std::vector<float>& acp = x.tables.alphas_cumprod;
  const int64_t T = int64_t(acp.size());
  if (t < 0 || t >= T || tp >= T)
    fail(ErrorCode::InvalidArgument, "PNDMScheduler: timestep " + std::to_string(t) + " -> " + std::to_string(tp) +
                                         " leaves [0, num_train_timesteps); this schedule cannot run");
  const float a = acp[size_t(t)];
  const float ap = tp >= 0 ? acp[size_t(tp)] : x.tables.final_alpha_cumprod;
  const float bt = f32(1.0f - a), bp = f32(1.0f - ap);
  if (x.c.prediction_type == PredictionType::VPrediction)
    e = b.add(b.mul(b.k(std::sqrt(a)), e), b.mul(b.k(std::sqrt(bt)), sample));
  const float sc = std::sqrt(f32(ap / a));
  const float den = f32(f32(a * std::sqrt(bp)) + std::sqrt(f32(f32(a * bt) * ap)));
  b.set(b.x(), b.sub(b.mul(b.k(sc), sample), b.div(b.mul(b.k(f32(ap - a)), e), b.k(den))));
}

}  // namespace

void plan_pndm(PlanCtx& x) {
  const int64_t T = x.c.num_train_timesteps;
  const int N = x.s.num_inference_steps;
  const int64_t r = T / N;
  const bool prk_mode = !x.c.skip_prk_steps;
  std::vector<int> ets;  // slots of the model outputs PLMS combines (oldest first)
  int cur_sample = -1;   // slot
  int cur_acc = -1;      // slot of PRK's cur_model_output (-1 = the Python 0)
  int counter = 0;
  for (int i = 0; i < x.calls; ++i) {
    const int64_t t_passed = int64_t(x.s.timesteps[size_t(x.entry(i))]);
    RowBuilder b;
    if (prk_mode && counter < 12) {
      const int64_t diff = counter % 2 ? 0 : T / N / 2;
      const int64_t tp = t_passed - diff;
      const int64_t t = int64_t(x.s.timesteps[size_t(counter / 4 * 4)]);
      Val e = b.m();
      switch (counter % 4) {
        case 0: {
          if (cur_acc < 0) cur_acc = x.alloc_slot();
          b.set(b.slot(cur_acc), b.add(b.mul(b.k(f32(float(1.0 / 6.0))), b.m()), b.k(0.0f)));  // 0 + 1/6*e
          const int s = x.alloc_slot();
          b.set(b.slot(s), b.m());
          ets.push_back(s);
          if (cur_sample < 0) cur_sample = x.alloc_slot();
          b.set(b.slot(cur_sample), b.x());
          break;
        }
        case 1:
        case 2:
          b.set(b.slot(cur_acc), b.add(b.slot(cur_acc), b.mul(b.k(f32(float(1.0 / 3.0))), b.m())));
          break;
        case 3:
          e = b.add(b.slot(cur_acc), b.mul(b.k(f32(float(1.0 / 6.0))), b.m()));
          break;  // cur_model_output = 0: the slot is rewritten at the next k == 0
      }
      pndm_prev(x, b, b.slot(cur_sample), t, tp, e);
    } else {
      int64_t t = t_passed, tp = t_passed - r;
      if (counter != 1) {
        if (ets.size() > 3) {  // ets = ets[-3:] + [e]: reuse the oldest slot
          const int s = ets.front();
          ets.erase(ets.begin());
          ets.push_back(s);
        } else {
          ets.push_back(x.alloc_slot());
        }
        b.set(b.slot(ets.back()), b.m());
      } else {
        tp = t_passed;
        t = t_passed + r;
      }
      Val e = b.m(), sample = b.x();
      const size_t n = ets.size();
      auto E = [&](size_t k) { return b.slot(ets[n - k]); };  // E(1) = ets[-1]
      if (n == 1 && counter == 0) {
        if (cur_sample < 0) cur_sample = x.alloc_slot();
        b.set(b.slot(cur_sample), b.x());
      } else if (n == 1 && counter == 1) {
        e = b.div(b.add(b.m(), E(1)), b.k(2.0f));
        sample = b.slot(cur_sample);
      } else if (n == 2) {
        e = b.div(b.sub(b.mul(b.k(3.0f), E(1)), E(2)), b.k(2.0f));
      } else if (n == 3) {
        e = b.div(b.add(b.sub(b.mul(b.k(23.0f), E(1)), b.mul(b.k(16.0f), E(2))), b.mul(b.k(5.0f), E(3))), b.k(12.0f));
      } else {
        const Val s = b.sub(b.add(b.sub(b.mul(b.k(55.0f), E(1)), b.mul(b.k(59.0f), E(2))), b.mul(b.k(37.0f), E(3))),
                            b.mul(b.k(9.0f), E(4)));
        e = b.mul(b.k(f32(float(1.0 / 24.0))), s);
      }
      pndm_prev(x, b, sample, t, tp, e);
    }
    ++counter;
    x.finish_row(b, i, 0);
  }
}

void plan_lcm(PlanCtx& x) {
  const std::vector<float>& acp = x.tables.alphas_cumprod;
  const int n_ts = int(x.s.timesteps.size());
  const int N = x.s.num_inference_steps;
  for (int i = 0; i < x.calls; ++i) {
    const int e = x.entry(i);
    const int64_t t = int64_t(x.s.timesteps[size_t(e)]);
    const int64_t tp = e + 1 < n_ts ? int64_t(x.s.timesteps[size_t(e + 1)]) : t;
    const float a = acp[size_t(t)];
    const float ap = tp >= 0 ? acp[size_t(tp)] : x.tables.final_alpha_cumprod;
    const float bt = f32(1.0f - a), bp = f32(1.0f - ap);
    // c_skip = 0.25 / (st^2 + 0.25) (a Python scalar over a tensor: reciprocal, then times 0.25), c_out = st / sqrt(.)
    const float st = f32(float(t) * float(x.c.timestep_scaling));
    const float den = f32(f32(st * st) + 0.25f);
    const float c_skip = f32(f32(1.0f / den) * 0.25f);
    const float c_out = f32(st / std::sqrt(den));
    RowBuilder b;
    Val x0;
    switch (x.c.prediction_type) {
      case PredictionType::Epsilon: x0 = b.div(b.sub(b.x(), b.mul(b.k(std::sqrt(bt)), b.m())), b.k(std::sqrt(a))); break;
      case PredictionType::Sample: x0 = b.m(); break;
      case PredictionType::VPrediction: x0 = b.sub(b.mul(b.k(std::sqrt(a)), b.x()), b.mul(b.k(std::sqrt(bt)), b.m())); break;
    }
    if (x.c.thresholding) x0 = b.thresh(x0);
    else if (x.c.clip_sample) x0 = b.clamp(x0, float(x.c.clip_sample_range));
    const Val denoised = b.add(b.mul(b.k(c_out), x0), b.mul(b.k(c_skip), b.x()));
    const bool last = e == N - 1;  // step_index != num_inference_steps - 1 draws
    if (!last) {
      x.use_noise(b, i);
      b.set(b.x(), b.add(b.mul(b.k(std::sqrt(ap)), denoised), b.mul(b.k(std::sqrt(bp)), b.z())));
    } else {
      b.set(b.x(), denoised);
    }
    x.finish_row(b, i, last ? 0 : 1);
  }
}

}  // namespace diffrt::plan_detail
