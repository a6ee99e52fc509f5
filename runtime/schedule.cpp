// Schedules as diffusers 0.27.2 computes them (see schedule.h for the contract and the points
// where 0.27.2 differs from the research spec). Verified by tests/schedule_test.cpp against
// fixtures written by tests/fixtures/make_scheduler_fixtures.py.
#include "runtime/schedule.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace diffrt {
namespace {

// A product rounded to float on its own (never fused into an FMA by the compiler), as torch's
// separate vector multiply does.
float mul_rounded(float a, float b) {
  volatile float p = a * b;
  return p;
}

// torch CPU cumprod over float32: accumulate in double, round each output to float.
std::vector<float> cumprod_f32(const std::vector<float>& a) {
  std::vector<float> out(a.size());
  double acc = 1.0;
  for (size_t i = 0; i < a.size(); ++i) { acc *= double(a[i]); out[i] = float(acc); }
  return out;
}

// diffusers betas_for_alpha_bar(T), cosine transform: Python double math, then float32.
std::vector<float> cosine_betas(int T) {
  auto alpha_bar = [](double t) {
    double v = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return std::pow(v, 2.0);
  };
  std::vector<float> b(T);
  for (int i = 0; i < T; ++i) {
    double t1 = double(i) / T, t2 = double(i + 1) / T;
    b[i] = float(std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return b;
}

// betas_for_alpha_bar(T, alpha_transform_type="exp") (Heun only): alpha_bar(t) = exp(-12 t), Python double.
std::vector<float> exp_betas(int T) {
  auto alpha_bar = [](double t) { return std::exp(t * -12.0); };
  std::vector<float> b(T);
  for (int i = 0; i < T; ++i) {
    double t1 = double(i) / T, t2 = double(i + 1) / T;
    b[i] = float(std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return b;
}

// diffusers rescale_zero_terminal_snr (Lin et al. 2023, Alg. 1), float32 tensor maths.
std::vector<float> rescale_zero_snr(const std::vector<float>& betas) {
  const size_t T = betas.size();
  std::vector<float> alphas(T);
  for (size_t i = 0; i < T; ++i) alphas[i] = 1.0f - betas[i];
  std::vector<float> s = cumprod_f32(alphas);
  for (float& v : s) v = std::sqrt(v);
  const float s0 = s[0], sT = s[T - 1];
  const float scale = s0 / (s0 - sT);
  std::vector<float> ab(T);
  for (size_t i = 0; i < T; ++i) {
    float v = (s[i] - sT) * scale;
    ab[i] = v * v;
  }
  std::vector<float> out(T);
  out[0] = 1.0f - ab[0];
  for (size_t i = 1; i < T; ++i) out[i] = 1.0f - ab[i] / ab[i - 1];
  return out;
}

}  // namespace

std::vector<float> torch_linspace_f32(double start, double end, int64_t steps) {
  if (steps <= 0) return {};
  const float s = float(start), e = float(end);
  if (steps == 1) return {s};
  // torch's CPU kernel: step in float; first half counts up from start, second half down from
  // end. The AVX2 path builds each 8-lane vector as base + k*step where base was computed with a
  // fused multiply-add, and the scalar tail also uses FMA (measured bit-exact against torch 1.13).
  const float step = (e - s) / float(steps - 1);
  const int64_t halfway = steps / 2;
  auto scalar = [&](int64_t idx) {
    return idx < halfway ? std::fma(step, float(idx), s) : std::fma(-step, float(steps - idx - 1), e);
  };
  std::vector<float> out(size_t(steps), 0.f);
  int64_t i = 0;
  for (; i + 16 <= steps; i += 16) {
    for (int64_t idx = i; idx < i + 16; idx += 8) {
      const float base = scalar(idx);
      for (int k = 0; k < 8; ++k) out[size_t(idx + k)] = base + mul_rounded(float(k), step);
    }
  }
  for (; i < steps; ++i) out[size_t(i)] = scalar(i);
  return out;
}

ScheduleTables compute_schedule(const SchedulerConfig& c) {
  validate_scheduler_config(c, "scheduler config");
  const int T = c.num_train_timesteps;
  ScheduleTables s;
  if (c.has_trained_betas) {
    s.betas.resize(T);
    for (int i = 0; i < T; ++i) s.betas[i] = float(c.trained_betas[i]);
  } else {
    switch (c.beta_schedule) {
      case BetaSchedule::Linear: s.betas = torch_linspace_f32(c.beta_start, c.beta_end, T); break;
      case BetaSchedule::ScaledLinear:
        s.betas = torch_linspace_f32(std::pow(c.beta_start, 0.5), std::pow(c.beta_end, 0.5), T);
        for (float& b : s.betas) b = b * b;
        break;
      case BetaSchedule::SquaredCosCapV2: s.betas = cosine_betas(T); break;
      case BetaSchedule::Exp: s.betas = exp_betas(T); break;
      case BetaSchedule::Sigmoid: {
        std::vector<float> x = torch_linspace_f32(-6.0, 6.0, T);
        const float range = float(c.beta_end - c.beta_start), lo = float(c.beta_start);
        s.betas.resize(T);
        for (int i = 0; i < T; ++i) {
          float sig = 1.0f / (1.0f + std::exp(-x[i]));
          s.betas[i] = mul_rounded(sig, range) + lo;
        }
        break;
      }
    }
  }
  if (c.rescale_betas_zero_snr && scheduler_class_takes(c.klass, "rescale_betas_zero_snr"))
    s.betas = rescale_zero_snr(s.betas);
  std::vector<float> alphas(T);
  for (int i = 0; i < T; ++i) alphas[i] = 1.0f - s.betas[i];
  s.alphas_cumprod = cumprod_f32(alphas);
  // DPM-Solver, Euler and Euler a keep the zero-SNR end just above 0 (fp16's smallest subnormal), so that
  // sigma_max is finite; DDPM, DDIM and LCM keep alphas_cumprod[T-1] = 0.
  const bool patch = c.klass == SchedulerClass::DpmSolverMultistep || c.klass == SchedulerClass::EulerDiscrete ||
                     c.klass == SchedulerClass::EulerAncestral;
  if (c.rescale_betas_zero_snr && patch) s.alphas_cumprod[size_t(T - 1)] = 0x1p-24f;
  s.final_alpha_cumprod = c.set_alpha_to_one ? 1.0f : s.alphas_cumprod[0];
  return s;
}

std::vector<int64_t> inference_timesteps(const SchedulerConfig& c, int num_steps) {
  const int64_t T = c.num_train_timesteps;
  if (num_steps < 1 || num_steps > T)
    fail(ErrorCode::InvalidArgument, "steps = " + std::to_string(num_steps) +
                                         " must be in [1, num_train_timesteps = " + std::to_string(T) + "]");
  const int64_t N = num_steps;
  std::vector<int64_t> ts;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Leading: {
      const int64_t r = T / N;
      for (int64_t i = N - 1; i >= 0; --i) ts.push_back(i * r + c.steps_offset);
      break;
    }
    case TimestepSpacing::Linspace: {
      // np.linspace(0, T-1, N).round()[::-1]: y_i = i * ((T-1)/(N-1)), last = T-1 exactly.
      std::vector<int64_t> up(size_t(N), 0);
      if (N > 1) {
        const double step = double(T - 1) / double(N - 1);
        for (int64_t i = 0; i < N; ++i) up[size_t(i)] = int64_t(std::nearbyint(double(i) * step));
        up[size_t(N - 1)] = T - 1;
      }
      ts.assign(up.rbegin(), up.rend());
      break;
    }
    case TimestepSpacing::Trailing: {
      // np.round(np.arange(T, 0, -T/N)) - 1; numpy's arange: len = ceil(-T / -r),
      // v_i = T + i * ((T - r) - T) (its fill uses the difference of the first two entries).
      const double r = double(T) / double(N);
      const double len_d = std::ceil((0.0 - double(T)) / -r);
      const int64_t len = int64_t(len_d);
      const double first = double(T), delta = (first + -r) - first;
      for (int64_t i = 0; i < len; ++i) {
        double v = i == 0 ? first : (i == 1 ? first + -r : first + double(i) * delta);
        ts.push_back(int64_t(std::nearbyint(v)) - 1);
      }
      break;
    }
  }
  for (int64_t t : ts)
    if (t < 0 || t >= T)
      fail(ErrorCode::InvalidArgument,
           "timestep " + std::to_string(t) + " for steps = " + std::to_string(num_steps) + " (spacing " +
               to_string(c.timestep_spacing) + ", steps_offset " + std::to_string(c.steps_offset) +
               ") falls outside [0, num_train_timesteps = " + std::to_string(T) + ")");
  return ts;
}

int64_t previous_timestep(const SchedulerConfig& c, int num_steps, int64_t t) {
  return t - int64_t(c.num_train_timesteps) / num_steps;
}

StepCoeffs step_coeffs(const SchedulerConfig& c, const ScheduleTables& s, SamplerKind kind,
                       int num_steps, int64_t t, float eta) {
  const int64_t T = int64_t(s.alphas_cumprod.size());
  if (t < 0 || t >= T)
    fail(ErrorCode::InvalidArgument, "timestep " + std::to_string(t) + " outside [0, " + std::to_string(T) + ")");
  StepCoeffs k;
  k.timestep = t;
  k.prev_timestep = previous_timestep(c, num_steps, t);
  const float apt = s.alphas_cumprod[size_t(t)];
  const float final_ac = kind == SamplerKind::Ddpm ? 1.0f : s.final_alpha_cumprod;
  const float app = k.prev_timestep >= 0 ? s.alphas_cumprod[size_t(k.prev_timestep)] : final_ac;
  k.alpha_prod_t = apt;
  k.alpha_prod_prev = app;
  k.beta_prod_t = 1.0f - apt;
  k.beta_prod_prev = 1.0f - app;
  k.sqrt_alpha_prod_t = std::sqrt(apt);
  k.sqrt_beta_prod_t = std::sqrt(k.beta_prod_t);
  k.sqrt_alpha_prod_prev = std::sqrt(app);
  if (kind == SamplerKind::Ddpm) {
    k.current_alpha_t = apt / app;
    k.current_beta_t = 1.0f - k.current_alpha_t;
    k.x0_coeff = mul_rounded(k.sqrt_alpha_prod_prev, k.current_beta_t) / k.beta_prod_t;
    k.xt_coeff = mul_rounded(std::sqrt(k.current_alpha_t), k.beta_prod_prev) / k.beta_prod_t;
    float var = mul_rounded((1.0f - app) / (1.0f - apt), k.current_beta_t);
    var = std::max(var, 1e-20f);
    switch (c.variance_type) {
      case VarianceType::FixedSmall: k.noise_std = std::sqrt(var); break;
      case VarianceType::FixedSmallLog: k.noise_std = std::exp(0.5f * std::log(var)); break;
      case VarianceType::FixedLarge: k.noise_std = std::sqrt(k.current_beta_t); break;
      case VarianceType::Learned: k.noise_std = std::sqrt(var); break;  // used only without a variance head
      case VarianceType::LearnedRange: k.noise_std = std::sqrt(var); break;
    }
    k.log_var_min = std::log(var);
    k.log_var_max = std::log(k.current_beta_t);
    k.add_noise = t > 0;
  } else {
    if (!(eta >= 0.0f) || !std::isfinite(eta))
      fail(ErrorCode::InvalidArgument, "eta = " + std::to_string(eta) + " must be a finite number >= 0");
    const float variance = mul_rounded(k.beta_prod_prev / k.beta_prod_t, 1.0f - apt / app);
    k.std_dev_t = mul_rounded(eta, std::sqrt(variance));
    k.dir_coeff = std::sqrt((1.0f - app) - mul_rounded(k.std_dev_t, k.std_dev_t));
    k.add_noise = eta > 0.0f;
  }
  return k;
}

SamplingPlan make_sampling_plan(const SchedulerConfig& c, SamplerKind kind, int num_steps, float eta) {
  SamplingPlan p;
  p.kind = kind;
  ScheduleTables s = compute_schedule(c);
  p.timesteps = inference_timesteps(c, num_steps);
  for (int64_t t : p.timesteps) p.coeffs.push_back(step_coeffs(c, s, kind, num_steps, t, eta));
  return p;
}

}  // namespace diffrt
