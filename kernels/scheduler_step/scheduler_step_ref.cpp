// CPU reference of the fused scheduler step (formula and layouts: scheduler_step.h).
// Plain float32 arithmetic in torch's eager operation order: every product and sum is rounded
// separately, as torch's element-wise kernels do, so results match diffusers to ~1 ulp.
// Tested by tests/scheduler_step_test.cpp against diffusers 0.27.2 fixtures.
#include "kernels/scheduler_step/scheduler_step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/common/philox.h"

namespace diffrt {
namespace {

[[noreturn]] void bad(const std::string& msg) {
  fail(ErrorCode::InvalidArgument, "scheduler_step: " + msg);
}

// torch.lerp for float as torch 1.13's AVX2 CPU kernel computes it: |w| < 0.5 ? fma(w, b-a, a) :
// fma(-(b-a), 1-w, b) (the build contracts the lerp into FMAs; tests/fixtures/samplers/README.md §D0.12).
float lerp_torch(float a, float b, float w) {
  float d = b - a;
  return std::fabs(w) < 0.5f ? std::fma(w, d, a) : std::fma(-d, 1.0f - w, b);
}

}  // namespace

float quantile_linear(float* values, int64_t n, float q) {
  if (n <= 0) bad("quantile of an empty row");
  std::sort(values, values + n);
  // torch: q is a float32 tensor; ranks = q * (n - 1) in float32; below = trunc, above = ceil.
  float rank = q * float(n - 1);
  int64_t below = int64_t(rank);
  int64_t above = int64_t(std::ceil(rank));
  below = std::min<int64_t>(std::max<int64_t>(below, 0), n - 1);
  above = std::min<int64_t>(std::max<int64_t>(above, 0), n - 1);
  float weight = rank - float(below);
  return lerp_torch(values[below], values[above], weight);
}

void scheduler_step_validate(const SchedulerStepParams& p) {
  if (p.kind != SamplerKind::Ddpm && p.kind != SamplerKind::Ddim) bad("kind must be ddpm or ddim");
  if (!p.model_out) bad("model_out is null");
  if (!p.x) bad("x is null");
  if (p.b <= 0 || p.h <= 0 || p.w <= 0 || p.c <= 0)
    bad("shape b=" + std::to_string(p.b) + " h=" + std::to_string(p.h) + " w=" + std::to_string(p.w) +
        " c=" + std::to_string(p.c) + " must be positive");
  if (p.cm != p.c && p.cm != 2 * p.c)
    bad("cm=" + std::to_string(p.cm) + " must be c (" + std::to_string(p.c) + ") or 2c");
  bool learned = p.variance == VarianceType::Learned || p.variance == VarianceType::LearnedRange;
  if (p.kind == SamplerKind::Ddpm && learned && p.cm != 2 * p.c)
    bad("variance type learned/learned_range needs a model with 2*C output channels, got cm=" +
        std::to_string(p.cm) + " for c=" + std::to_string(p.c));
  if (p.noise_source == NoiseSource::Buffer && !p.noise && p.k.add_noise)
    bad("noise_source is Buffer but noise is null");
  if (p.k.add_noise && p.noise_source == NoiseSource::None)
    bad("this step adds noise (t=" + std::to_string(p.k.timestep) + ") but noise_source is None");
  if (!std::isfinite(p.guidance_scale)) bad("guidance_scale is not finite");
  if (p.thresholding && !(p.dynamic_thresholding_ratio > 0.f && p.dynamic_thresholding_ratio <= 1.f))
    bad("dynamic_thresholding_ratio=" + std::to_string(p.dynamic_thresholding_ratio) + " not in (0, 1]");
  uint64_t hwc = uint64_t(p.h) * p.w * p.c;
  if (hwc > 0xffffffffull) bad("h*w*c exceeds 2^32 elements per sample");
}

void scheduler_step_ref(const SchedulerStepParams& p) {
  scheduler_step_validate(p);
  const int B = p.b, H = p.h, W = p.w, C = p.c, Cm = p.cm;
  const int64_t HW = int64_t(H) * W;
  const int64_t n_per = HW * C;
  const StepCoeffs& k = p.k;
  const bool learned_split = Cm == 2 * C && (p.variance == VarianceType::Learned ||
                                             p.variance == VarianceType::LearnedRange);

  std::vector<float> eps(n_per), var(learned_split ? n_per : 0), x0(n_per), tmp;
  for (int n = 0; n < B; ++n) {
    float* x = p.x + int64_t(n) * n_per;
    const float* cond = p.model_out + (int64_t(p.cfg ? B + n : n)) * HW * Cm;
    const float* uncond = p.model_out + int64_t(n) * HW * Cm;
    // 1. guided model output (first C channels) and predicted variance (cond half).
    for (int64_t i = 0; i < HW; ++i) {
      for (int ch = 0; ch < C; ++ch) {
        float cv = cond[i * Cm + ch];
        if (p.cfg) {
          float u = uncond[i * Cm + ch];
          cv = u + p.guidance_scale * (cv - u);
        }
        eps[i * C + ch] = cv;
        if (learned_split) var[i * C + ch] = cond[i * Cm + C + ch];
      }
    }
    // 2. predicted x0 (and DDIM's epsilon for sample prediction, from the unclipped x0).
    for (int64_t j = 0; j < n_per; ++j) {
      float m = eps[j], xv = x[j];
      switch (p.prediction) {
        case PredictionType::Epsilon: x0[j] = (xv - k.sqrt_beta_prod_t * m) / k.sqrt_alpha_prod_t; break;
        case PredictionType::Sample:
          x0[j] = m;
          if (p.kind == SamplerKind::Ddim) eps[j] = (xv - k.sqrt_alpha_prod_t * m) / k.sqrt_beta_prod_t;
          break;
        case PredictionType::VPrediction:
          x0[j] = k.sqrt_alpha_prod_t * xv - k.sqrt_beta_prod_t * m;
          if (p.kind == SamplerKind::Ddim) eps[j] = k.sqrt_alpha_prod_t * m + k.sqrt_beta_prod_t * xv;
          break;
      }
    }
    // 3. dynamic thresholding (per sample) or plain clipping.
    if (p.thresholding) {
      tmp.resize(n_per);
      for (int64_t j = 0; j < n_per; ++j) tmp[j] = std::fabs(x0[j]);
      float s = quantile_linear(tmp.data(), n_per, p.dynamic_thresholding_ratio);
      s = std::min(std::max(s, 1.0f), p.sample_max_value);  // torch.clamp(min=1, max=smv)
      for (int64_t j = 0; j < n_per; ++j) x0[j] = std::min(std::max(x0[j], -s), s) / s;
    } else if (p.clip_sample) {
      const float r = p.clip_sample_range;
      for (int64_t j = 0; j < n_per; ++j) x0[j] = std::min(std::max(x0[j], -r), r);
    }
    // 4. update, then noise. Noise element (y, x, c) uses NCHW index c*HW + y*W + x.
    const uint32_t sample_index = p.sample_index_base + uint32_t(n);
    for (int64_t i = 0; i < HW; ++i) {
      for (int ch = 0; ch < C; ++ch) {
        const int64_t j = i * C + ch;
        float xv = x[j], out;
        if (p.kind == SamplerKind::Ddpm) {
          out = k.x0_coeff * x0[j] + k.xt_coeff * xv;
        } else {
          float e = eps[j];
          if (p.use_clipped_model_output) e = (xv - k.sqrt_alpha_prod_t * x0[j]) / k.sqrt_beta_prod_t;
          out = k.sqrt_alpha_prod_prev * x0[j] + k.dir_coeff * e;
        }
        if (k.add_noise) {
          float z = p.noise_source == NoiseSource::Buffer
                        ? p.noise[int64_t(n) * n_per + j]
                        : philox::normal_at(p.seed, sample_index, p.step_index, philox::kTagStep,
                                            uint32_t(int64_t(ch) * HW + i));
          float term;
          if (p.kind == SamplerKind::Ddim) {
            term = k.std_dev_t * z;
          } else if (p.variance == VarianceType::Learned && learned_split) {
            term = std::sqrt(var[j]) * z;
          } else if (p.variance == VarianceType::LearnedRange && learned_split) {
            float f = (var[j] + 1.0f) / 2.0f;
            float logv = f * k.log_var_max + (1.0f - f) * k.log_var_min;
            term = std::exp(0.5f * logv) * z;
          } else {
            term = k.noise_std * z;
          }
          out = out + term;
        }
        x[j] = out;
        if (p.pred_x0) p.pred_x0[int64_t(n) * n_per + j] = x0[j];
      }
    }
    if (p.model_in) {
      std::copy(x, x + n_per, p.model_in + int64_t(n) * n_per);
      if (p.cfg) std::copy(x, x + n_per, p.model_in + int64_t(B + n) * n_per);
    }
  }
}

}  // namespace diffrt
