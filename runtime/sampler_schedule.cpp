// set_timesteps(N) of every scheduler class, the img2img start and add_noise (contract in sampler_schedule.h).
// Semantics: tests/fixtures/samplers/README.md §D1-§D11, tests/fixtures/img2img/README.md §3-§4.
// Verified by tests/sampler_schedule_test.cpp against all 190 fixture tables (timesteps in their dtype, sigmas,
// init_noise_sigma, scale divisors, img2img starts) and the import cases' schedules.
#include "runtime/sampler_schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "runtime/sampler_math.h"

namespace diffrt {
namespace {

using K = SchedulerClass;
using smath::np_round;

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

inline float f32(float v) {
  volatile float r = v;
  return r;
}

// sig[t] = ((1 - acp) / acp) ** 0.5 in float32.
std::vector<float> sigma_table(const ScheduleTables& s) {
  std::vector<float> sig(s.alphas_cumprod.size());
  for (size_t i = 0; i < sig.size(); ++i) {
    const float a = s.alphas_cumprod[i];
    sig[i] = std::sqrt(f32(f32(1.0f - a) / a));
  }
  return sig;
}

std::vector<float> log_table(const std::vector<float>& sig) {
  std::vector<float> l(sig.size());
  for (size_t i = 0; i < sig.size(); ++i) l[i] = smath::np_logf(sig[i]);
  return l;
}

// "N points" (Euler family, PNDM, DDIM, DDPM) as doubles, descending; integers except Euler linspace.
std::vector<double> n_points(const SchedulerConfig& c, int N, bool float_linspace) {
  const int64_t T = c.num_train_timesteps;
  std::vector<double> ts;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      const std::vector<double> up = smath::np_linspace(0.0, double(T - 1), N);
      for (auto it = up.rbegin(); it != up.rend(); ++it) ts.push_back(float_linspace ? double(float(*it)) : double(np_round(*it)));
      break;
    }
    case TimestepSpacing::Leading: {
      const int64_t r = T / N;
      for (int64_t i = N - 1; i >= 0; --i) ts.push_back(double(i * r + c.steps_offset));
      break;
    }
    case TimestepSpacing::Trailing: {
      const std::vector<double> a = smath::np_arange_down(double(T), double(T) / double(N));
      for (double v : a) ts.push_back(double(np_round(v) - 1));
      break;
    }
  }
  return ts;
}

// "N+1 points, drop the last" (DPM, UniPC), int64.
std::vector<double> n_plus_one_points(const SchedulerConfig& c, int N, int64_t last) {
  const int64_t T = c.num_train_timesteps;
  std::vector<double> ts;
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      const std::vector<double> up = smath::np_linspace(0.0, double(last - 1), N + 1);
      for (int64_t i = N; i >= 1; --i) ts.push_back(double(np_round(up[size_t(i)])));
      break;
    }
    case TimestepSpacing::Leading: {
      const int64_t r = last / (N + 1);
      for (int64_t i = N; i >= 1; --i) ts.push_back(double(i * r + c.steps_offset));
      break;
    }
    case TimestepSpacing::Trailing: {
      const std::vector<double> a = smath::np_arange_down(double(last), double(T) / double(N));
      for (double v : a) ts.push_back(double(np_round(v) - 1));
      break;
    }
  }
  return ts;
}

void check_range(const std::vector<double>& ts, int N, const SchedulerConfig& c) {
  for (double t : ts)
    if (!(t >= 0.0 && t <= double(c.num_train_timesteps - 1)))
      bad("timestep " + std::to_string(t) + " for steps = " + std::to_string(N) + " (" +
          scheduler_class_name(c.klass) + ", timestep_spacing " + to_string(c.timestep_spacing) + ", steps_offset " +
          std::to_string(c.steps_offset) + ") falls outside [0, num_train_timesteps = " +
          std::to_string(c.num_train_timesteps) + ")" +
          (c.timestep_spacing == TimestepSpacing::Trailing ? "; trailing spacing gives N+1 timesteps ending in -1 for this N"
                                                           : ""));
}

// Karras endpoints: config sigma_min / sigma_max when present (an Euler key, or a hidden key of another class).
double karras_end(const SchedulerConfig& c, const char* key, double fallback) {
  const bool own = scheduler_class_takes(c.klass, key);
  if (own) {
    const bool has = std::string(key) == "sigma_min" ? c.has_sigma_min : c.has_sigma_max;
    if (has) return std::string(key) == "sigma_min" ? c.sigma_min : c.sigma_max;
    return fallback;
  }
  auto it = c.hidden.find(key);
  if (it == c.hidden.end() || it->second == "null") return fallback;
  // A hidden value is JSON text written by the config parser: a plain number.
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (!end || *end != '\0' || !(v > 0) || !std::isfinite(v))
    bad(std::string("scheduler config: hidden key ") + key + " = " + it->second + " is not a positive number");
  return v;
}

float max_of(const std::vector<float>& v) {
  float m = v[0];
  for (float x : v) m = std::max(m, x);  // torch max propagates NaN; sigmas are finite here
  return m;
}

void euler_family(const SchedulerConfig& c, const ScheduleTables& t, int N, ClassSchedule& s) {
  const std::vector<float> sig = sigma_table(t);
  const std::vector<double> ts0 = n_points(c, N, true);
  std::vector<float> ts(ts0.size());
  for (size_t i = 0; i < ts.size(); ++i) ts[i] = float(ts0[i]);  // astype(float32) (+ offset / - 1 exact)
  check_range(ts0, N, c);
  const bool euler = c.klass == K::EulerDiscrete;
  const bool log_linear = euler && c.interpolation_type == Interpolation::LogLinear;
  std::vector<double> sigma;
  if (log_linear) {
    const std::vector<float> l = torch_linspace_f32(double(smath::np_logf(sig.back())), double(smath::np_logf(sig[0])), N + 1);
    for (float v : l) sigma.push_back(double(smath::exp_f(v)));
  } else {
    for (float v : ts) sigma.push_back(smath::np_interp_grid(double(v), sig));
  }
  std::vector<double> tsd(ts.begin(), ts.end());
  bool karras = c.use_karras_sigmas && c.klass != K::EulerAncestral;
  if (karras) {
    const double smin = karras_end(c, "sigma_min", sigma.back());
    const double smax = karras_end(c, "sigma_max", sigma.front());
    sigma = smath::karras_sigmas(smin, smax, N);
    const std::vector<float> logs = log_table(sig);
    tsd.clear();
    const bool sorted = std::is_sorted(logs.begin(), logs.end());
    for (double v : sigma) tsd.push_back(smath::sigma_to_t(v, logs, sorted));
  }
  std::vector<float> sigf;
  for (double v : sigma) sigf.push_back(float(v));
  if (c.klass == K::Heun) {
    // sigmas = [s0, s1, s1, ..., s(N-1), s(N-1), 0]; timesteps = [t0, t1, t1, ..., t(N-1), t(N-1)].
    sigf.push_back(0.0f);
    s.sigmas.push_back(sigf[0]);
    for (size_t i = 1; i + 1 < sigf.size(); ++i) { s.sigmas.push_back(sigf[i]); s.sigmas.push_back(sigf[i]); }
    s.sigmas.push_back(sigf.back());
    s.ts_dtype = karras ? TimestepDType::Float64 : TimestepDType::Float32;
    auto tv = [&](double v) { return karras ? v : double(float(v)); };
    s.timesteps.push_back(tv(tsd[0]));
    for (size_t i = 1; i < tsd.size(); ++i) { s.timesteps.push_back(tv(tsd[i])); s.timesteps.push_back(tv(tsd[i])); }
    s.order = 2;
  } else {
    s.ts_dtype = TimestepDType::Float32;
    if (euler && c.timestep_type == TimestepType::Continuous && c.prediction_type == PredictionType::VPrediction) {
      for (float v : sigf) s.timesteps.push_back(double(f32(0.25f * smath::log_f(v))));
    } else {
      for (double v : tsd) s.timesteps.push_back(double(float(v)));
    }
    s.sigmas = sigf;
    s.sigmas.push_back(0.0f);
  }
  const float m = max_of(s.sigmas);
  s.init_noise_sigma = c.timestep_spacing == TimestepSpacing::Leading ? std::sqrt(f32(f32(m * m) + 1.0f)) : m;
  s.init_noise_sigma_tensor = true;
  // scale_model_input at call j divides by sqrt(sigmas[j]^2 + 1).
  for (size_t j = 0; j < s.timesteps.size(); ++j) {
    const float sg = s.sigmas[j];
    s.scale_divisor.push_back(std::sqrt(f32(f32(sg * sg) + 1.0f)));
  }
}

void vp_family(const SchedulerConfig& c, const ScheduleTables& t, int N, ClassSchedule& s) {
  const int64_t T = c.num_train_timesteps;
  const std::vector<float> sig = sigma_table(t);
  const bool dpm = c.klass == K::DpmSolverMultistep;
  int64_t last = T;
  if (dpm) {
    // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped): entries strictly below it.
    int64_t clipped = 0;
    if (!std::isinf(c.lambda_min_clipped)) {
      const float lmc = float(c.lambda_min_clipped);
      for (int64_t i = 0; i < T; ++i) {
        const float a = t.alphas_cumprod[size_t(i)];
        const float lam = f32(smath::log_f(std::sqrt(a)) - smath::log_f(std::sqrt(f32(1.0f - a))));
        if (lam < lmc) ++clipped;
      }
    }
    last = T - clipped;
  }
  std::vector<double> ts = n_plus_one_points(c, N, last);
  std::vector<double> sigma;
  if (c.use_karras_sigmas) {
    const std::vector<float> logs = log_table(sig);
    const double smin = karras_end(c, "sigma_min", double(sig.front()));
    const double smax = karras_end(c, "sigma_max", double(sig.back()));
    sigma = smath::karras_sigmas(smin, smax, N);
    ts.clear();
    const bool sorted = std::is_sorted(logs.begin(), logs.end());
    for (double v : sigma) ts.push_back(double(np_round(smath::sigma_to_t(v, logs, sorted))));
  } else if (dpm && c.use_lu_lambdas) {
    const std::vector<float> logs = log_table(sig);
    const double lmin = double(logs.front()), lmax = double(logs.back());  // flip(log_sigmas)[-1], [0]
    const std::vector<double> ramp = smath::np_linspace(0.0, 1.0, N);
    const bool sorted = std::is_sorted(logs.begin(), logs.end());
    ts.clear();
    for (double r : ramp) {
      volatile double p = r * (lmin - lmax);
      const double lam = lmax + p;
      sigma.push_back(std::exp(lam));
      ts.push_back(double(np_round(smath::sigma_to_t(sigma.back(), logs, sorted))));
    }
  } else {
    check_range(ts, N, c);
    for (double v : ts) sigma.push_back(smath::np_interp_grid(v, sig));
  }
  for (double v : sigma) s.sigmas.push_back(float(v));
  if (dpm) s.sigmas.push_back(c.final_sigmas_type == FinalSigmas::SigmaMin ? sig[0] : 0.0f);
  else s.sigmas.push_back(c.use_karras_sigmas ? float(sigma.back()) : sig[0]);
  s.timesteps = ts;
  s.ts_dtype = TimestepDType::Int64;
  s.init_noise_sigma = 1.0f;
  s.scale_divisor.assign(ts.size(), 1.0f);
}

void pndm(const SchedulerConfig& c, int N, ClassSchedule& s) {
  const int64_t T = c.num_train_timesteps;
  std::vector<int64_t> base;  // _timesteps, ascending
  switch (c.timestep_spacing) {
    case TimestepSpacing::Linspace:
      for (double v : smath::np_linspace(0.0, double(T - 1), N)) base.push_back(np_round(v));
      break;
    case TimestepSpacing::Leading:
      for (int64_t i = 0; i < N; ++i) base.push_back(i * (T / N) + c.steps_offset);
      break;
    case TimestepSpacing::Trailing: {
      const std::vector<double> a = smath::np_arange_down(double(T), double(T) / double(N));
      for (auto it = a.rbegin(); it != a.rend(); ++it) base.push_back(np_round(*it) - 1);
      break;
    }
  }
  const int64_t n = int64_t(base.size());
  std::vector<int64_t> ts;
  if (c.skip_prk_steps) {
    // concat(_ts[:-1], _ts[-2:-1], _ts[-1:])[::-1]
    std::vector<int64_t> up(base.begin(), base.end() - 1);
    if (n >= 2) up.push_back(base[size_t(n - 2)]);
    up.push_back(base.back());
    ts.assign(up.rbegin(), up.rend());
  } else {
    if (N < 4 || n < 4)
      bad("PNDMScheduler with skip_prk_steps=false needs steps >= 4 (diffusers fails for " + std::to_string(N) + ")");
    const int64_t h = T / N / 2;
    std::vector<int64_t> prk;  // _ts[-4:].repeat(2) + tile([0, h], 4)
    for (int64_t i = n - 4; i < n; ++i) { prk.push_back(base[size_t(i)]); prk.push_back(base[size_t(i)] + h); }
    prk.pop_back();            // [:-1]
    std::vector<int64_t> rep;  // .repeat(2)[1:-1]
    for (int64_t v : prk) { rep.push_back(v); rep.push_back(v); }
    rep = std::vector<int64_t>(rep.begin() + 1, rep.end() - 1);
    ts.assign(rep.rbegin(), rep.rend());
    for (int64_t i = n - 4; i >= 0; --i) ts.push_back(base[size_t(i)]);  // _ts[:-3][::-1]
    s.pndm_prk_calls = 12;
  }
  for (int64_t v : ts) s.timesteps.push_back(double(v));
  s.ts_dtype = TimestepDType::Int64;
  s.scale_divisor.assign(ts.size(), 1.0f);
}

void lcm(const SchedulerConfig& c, int N, ClassSchedule& s) {
  const int64_t T = c.num_train_timesteps;
  const int64_t O = c.original_inference_steps;
  if (O > T) bad("LCMScheduler: original_inference_steps " + std::to_string(O) + " > num_train_timesteps");
  if (N > T) bad("LCMScheduler: steps " + std::to_string(N) + " > num_train_timesteps " + std::to_string(T));
  const int64_t k = T / O;
  std::vector<int64_t> origin;
  for (int64_t i = 1; i <= O; ++i) origin.push_back(i * k - 1);
  const int64_t len = int64_t(origin.size());
  if (len / N < 1)
    bad("LCMScheduler: steps = " + std::to_string(N) + " exceeds original_inference_steps = " + std::to_string(O) +
        " (diffusers raises); use at most " + std::to_string(O) + " steps");
  std::reverse(origin.begin(), origin.end());
  const double step = double(len) / double(N);  // np.linspace(0, len, N, endpoint=False)
  for (int64_t i = 0; i < N; ++i) {
    volatile double p = double(i) * step;
    const double y = p + 0.0;
    s.timesteps.push_back(double(origin[size_t(int64_t(std::floor(y)))]));
  }
  s.ts_dtype = TimestepDType::Int64;
  s.scale_divisor.assign(size_t(N), 1.0f);
}

}  // namespace

ClassSchedule class_schedule(const SchedulerConfig& c, const ScheduleTables& t, int N) {
  const int64_t T = c.num_train_timesteps;
  if (N < 1 || N > T)
    bad("steps = " + std::to_string(N) + " must be in [1, num_train_timesteps = " + std::to_string(T) + "]");
  ClassSchedule s;
  s.klass = c.klass;
  s.num_inference_steps = N;
  switch (c.klass) {
    case K::Ddpm:
    case K::Ddim: {
      for (int64_t v : inference_timesteps(c, N)) s.timesteps.push_back(double(v));
      s.scale_divisor.assign(s.timesteps.size(), 1.0f);
      break;
    }
    case K::Pndm: pndm(c, N, s); break;
    case K::DpmSolverMultistep:
    case K::UniPC: vp_family(c, t, N, s); break;
    case K::EulerDiscrete:
    case K::EulerAncestral:
    case K::Heun: euler_family(c, t, N, s); break;
    case K::Lcm: lcm(c, N, s); break;
  }
  const bool continuous = c.klass == K::EulerDiscrete && c.timestep_type == TimestepType::Continuous &&
                          c.prediction_type == PredictionType::VPrediction;
  if (!continuous) check_range(s.timesteps, N, c);
  return s;
}

NoiseMix add_noise_acp(const ScheduleTables& t, int64_t ts) {
  if (ts < 0 || ts >= int64_t(t.alphas_cumprod.size())) bad("add_noise: timestep " + std::to_string(ts) + " out of range");
  const float a = t.alphas_cumprod[size_t(ts)];
  NoiseMix m;
  m.a = std::sqrt(a);
  m.b = std::sqrt(f32(1.0f - a));
  return m;
}

NoiseMix add_noise_at(const SchedulerConfig& c, const ScheduleTables& t, const ClassSchedule& s, int index) {
  switch (c.klass) {
    case K::DpmSolverMultistep:
    case K::UniPC: {
      const float sg = s.sigmas.at(size_t(index));
      NoiseMix m;
      m.a = f32(1.0f / std::sqrt(f32(f32(sg * sg) + 1.0f)));
      m.b = f32(sg * m.a);
      return m;
    }
    case K::EulerDiscrete:
    case K::EulerAncestral:
    case K::Heun: {
      NoiseMix m;
      m.sigma_family = true;
      m.a = 1.0f;
      m.b = s.sigmas.at(size_t(index));
      return m;
    }
    default: return add_noise_acp(t, int64_t(s.timesteps.at(size_t(index))));
  }
}

Img2ImgStart img2img_start(const SchedulerConfig& c, const ScheduleTables& t, const ClassSchedule& s, double strength) {
  if (!(strength >= 0.0 && strength <= 1.0)) bad("strength = " + std::to_string(strength) + " must be in [0, 1]");
  const int N = s.num_inference_steps;
  Img2ImgStart r;
  r.init_timestep = std::min(int(double(N) * strength), N);
  r.t_start = std::max(N - r.init_timestep, 0);
  if (r.init_timestep < 1)
    bad("strength = " + std::to_string(strength) + " with steps = " + std::to_string(N) +
        " runs no step (int(steps * strength) = 0); diffusers fails on it");
  r.begin_index = r.t_start * s.order;
  if (r.begin_index >= int(s.timesteps.size())) bad("img2img: the start index is past the schedule");
  r.has_begin_index = c.klass != K::Pndm && c.klass != K::Ddim && c.klass != K::Ddpm;
  r.latent_timestep = s.timesteps[size_t(r.begin_index)];
  const NoiseMix m = add_noise_at(c, t, s, r.begin_index);
  r.noise_a = m.a;
  r.noise_b = m.b;
  return r;
}

}  // namespace diffrt
