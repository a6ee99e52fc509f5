// Scheduler configs as diffusers 0.27.2 reads them (contract in scheduler_config.h): the per-class key tables
// and defaults, strict per-key parsing, from_config resolution and the JSON round trip. Names, sampler
// selection and descriptions are in scheduler_names.cpp.
// Verified by tests/scheduler_config_test.cpp against the import cases of tests/fixtures/samplers (effective
// configs and _use_default_values of X.from_config for the SD 1.5 / 2.1 / SDXL-like files and chains) and by
// tests/schedule_test.cpp (the DDPM/DDIM fields).
#include "model/scheduler_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {
namespace {

using json = nlohmann::json;
using K = SchedulerClass;

std::string short_dump(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

[[noreturn]] void bad_field(ErrorCode code, const std::string& origin, const std::string& key,
                            const std::string& value, const std::string& why) {
  fail(code, origin + ": scheduler config field '" + key + "' = " + value + ": " + why);
}

struct Ctx {
  SchedulerConfig& c;
  K k;
  const std::string& origin;
  const std::string& key;
  [[noreturn]] void bad(const json& v, const std::string& why, ErrorCode code = ErrorCode::InvalidModel) const {
    bad_field(code, origin, key, short_dump(v), why + " (" + scheduler_class_name(k) + ")");
  }
  bool boolean(const json& v) const {
    if (!v.is_boolean()) bad(v, "must be true or false");
    return v.get<bool>();
  }
  int64_t integer(const json& v, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) bad(v, "must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      bad(v, "out of range");
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) bad(v, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return i;
  }
  double number(const json& v) const {
    if (!v.is_number()) bad(v, "must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d)) bad(v, "must be finite");
    return d;
  }
  template <typename E, size_t N>
  E choice(const json& v, const std::pair<const char*, E> (&table)[N], std::initializer_list<E> allowed) const {
    std::string valid;
    for (E e : allowed)
      for (size_t i = 0; i < N; ++i)
        if (table[i].second == e) {
          valid += std::string(valid.empty() ? "" : ", ") + table[i].first;
          break;
        }
    if (!v.is_string()) bad(v, "must be a string, one of " + valid);
    const std::string s = v.get<std::string>();
    for (size_t i = 0; i < N; ++i)
      if (s == table[i].first) {
        for (E e : allowed)
          if (e == table[i].second) return e;
        break;
      }
    bad(v, "unknown value; valid values: " + valid);
  }
};

const std::pair<const char*, BetaSchedule> kBetaSchedules[] = {
    {"linear", BetaSchedule::Linear}, {"scaled_linear", BetaSchedule::ScaledLinear},
    {"squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2}, {"sigmoid", BetaSchedule::Sigmoid}, {"exp", BetaSchedule::Exp}};
const std::pair<const char*, VarianceType> kVarianceTypes[] = {
    {"fixed_small", VarianceType::FixedSmall}, {"fixed_small_log", VarianceType::FixedSmallLog},
    {"fixed_large", VarianceType::FixedLarge}, {"learned", VarianceType::Learned},
    {"learned_range", VarianceType::LearnedRange}};
const std::pair<const char*, PredictionType> kPredictionTypes[] = {
    {"epsilon", PredictionType::Epsilon}, {"sample", PredictionType::Sample},
    {"v_prediction", PredictionType::VPrediction}};
const std::pair<const char*, TimestepSpacing> kSpacings[] = {
    {"leading", TimestepSpacing::Leading}, {"linspace", TimestepSpacing::Linspace},
    {"trailing", TimestepSpacing::Trailing}};
const std::pair<const char*, DpmAlgorithm> kAlgorithms[] = {
    {"dpmsolver++", DpmAlgorithm::DpmSolverPP}, {"sde-dpmsolver++", DpmAlgorithm::SdeDpmSolverPP},
    {"dpmsolver", DpmAlgorithm::DpmSolver}, {"sde-dpmsolver", DpmAlgorithm::SdeDpmSolver},
    {"deis", DpmAlgorithm::DpmSolverPP}};  // 0.27.2 rewrites deis to dpmsolver++
const std::pair<const char*, SolverType> kSolverTypes[] = {
    {"midpoint", SolverType::Midpoint}, {"heun", SolverType::Heun}, {"bh1", SolverType::Bh1}, {"bh2", SolverType::Bh2}};
const std::pair<const char*, FinalSigmas> kFinalSigmas[] = {{"zero", FinalSigmas::Zero},
                                                            {"sigma_min", FinalSigmas::SigmaMin}};
const std::pair<const char*, Interpolation> kInterpolations[] = {{"linear", Interpolation::Linear},
                                                                 {"log_linear", Interpolation::LogLinear}};
const std::pair<const char*, TimestepType> kTimestepTypes[] = {{"discrete", TimestepType::Discrete},
                                                               {"continuous", TimestepType::Continuous}};

template <typename E, size_t N>
const char* enum_name(E v, const std::pair<const char*, E> (&table)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (table[i].second == v) return table[i].first;
  return "?";
}

constexpr int kMaxTrainTimesteps = 100000;

// ---- per-key parse and dump ----------------------------------------------------------------------------------
struct KeyDef {
  const char* name;
  void (*parse)(const Ctx&, const json&);
  json (*dump)(const SchedulerConfig&);
};

json dump_double(double d) {
  if (std::isinf(d)) return d < 0 ? json("-inf") : json("inf");
  return json(d);
}

const KeyDef kKeys[] = {
    {"num_train_timesteps", [](const Ctx& x, const json& v) { x.c.num_train_timesteps = int(x.integer(v, 1, kMaxTrainTimesteps)); },
     [](const SchedulerConfig& c) { return json(c.num_train_timesteps); }},
    {"beta_start", [](const Ctx& x, const json& v) { x.c.beta_start = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.beta_start); }},
    {"beta_end", [](const Ctx& x, const json& v) { x.c.beta_end = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.beta_end); }},
    {"beta_schedule",
     [](const Ctx& x, const json& v) {
       using B = BetaSchedule;
       switch (x.k) {
         // diffusers' DDIM raises for sigmoid; diffrt has always run it with DDPM's formula.
         case K::Ddpm: case K::Ddim:
           x.c.beta_schedule = x.choice(v, kBetaSchedules, {B::Linear, B::ScaledLinear, B::SquaredCosCapV2, B::Sigmoid});
           break;
         case K::Heun: x.c.beta_schedule = x.choice(v, kBetaSchedules, {B::Linear, B::ScaledLinear, B::SquaredCosCapV2, B::Exp}); break;
         default: x.c.beta_schedule = x.choice(v, kBetaSchedules, {B::Linear, B::ScaledLinear, B::SquaredCosCapV2}); break;
       }
     },
     [](const SchedulerConfig& c) { return json(to_string(c.beta_schedule)); }},
    {"trained_betas",
     [](const Ctx& x, const json& v) {
       x.c.has_trained_betas = false;
       x.c.trained_betas.clear();
       if (v.is_null()) return;
       if (!v.is_array()) x.bad(v, "must be null or an array of numbers");
       if (v.size() > size_t(kMaxTrainTimesteps)) x.bad(v, "too many entries");
       for (const json& e : v) {
         if (!e.is_number()) x.bad(e, "every entry must be a number");
         x.c.trained_betas.push_back(e.get<double>());
       }
       x.c.has_trained_betas = true;
     },
     [](const SchedulerConfig& c) { return c.has_trained_betas ? json(c.trained_betas) : json(nullptr); }},
    {"variance_type",
     [](const Ctx& x, const json& v) {
       x.c.variance_type_null = v.is_null();
       x.c.variance_type = VarianceType::FixedSmall;
       if (v.is_null()) return;  // DDPM 0.27.2: None matches no branch and behaves as fixed_small
       if (v.is_string() && v.get<std::string>() == "fixed_large_log") {
         if (x.k == K::Ddpm)
           x.bad(v, "unsupported: diffusers computes sqrt(log(beta_t)) for it, which is NaN; use fixed_large",
                 ErrorCode::Unsupported);
         x.c.variance_type_null = true;  // DPM reads only learned / learned_range
         return;
       }
       using V = VarianceType;
       x.c.variance_type = x.choice(v, kVarianceTypes, {V::FixedSmall, V::FixedSmallLog, V::FixedLarge, V::Learned, V::LearnedRange});
     },
     [](const SchedulerConfig& c) { return c.variance_type_null ? json(nullptr) : json(to_string(c.variance_type)); }},
    {"clip_sample", [](const Ctx& x, const json& v) { x.c.clip_sample = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.clip_sample); }},
    {"clip_sample_range", [](const Ctx& x, const json& v) { x.c.clip_sample_range = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.clip_sample_range); }},
    {"prediction_type",
     [](const Ctx& x, const json& v) {
       using P = PredictionType;
       if (x.k == K::EulerDiscrete && v.is_string() && v.get<std::string>() == "original_sample") {
         x.c.prediction_type = P::Sample;  // Euler treats original_sample as sample
         return;
       }
       switch (x.k) {
         case K::Pndm: x.c.prediction_type = x.choice(v, kPredictionTypes, {P::Epsilon, P::VPrediction}); break;
         case K::EulerAncestral: x.c.prediction_type = x.choice(v, kPredictionTypes, {P::Epsilon, P::VPrediction}); break;
         default: x.c.prediction_type = x.choice(v, kPredictionTypes, {P::Epsilon, P::Sample, P::VPrediction}); break;
       }
     },
     [](const SchedulerConfig& c) { return json(to_string(c.prediction_type)); }},
    {"thresholding", [](const Ctx& x, const json& v) { x.c.thresholding = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.thresholding); }},
    {"dynamic_thresholding_ratio", [](const Ctx& x, const json& v) { x.c.dynamic_thresholding_ratio = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.dynamic_thresholding_ratio); }},
    {"sample_max_value", [](const Ctx& x, const json& v) { x.c.sample_max_value = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.sample_max_value); }},
    {"timestep_spacing",
     [](const Ctx& x, const json& v) {
       using S = TimestepSpacing;
       x.c.timestep_spacing = x.choice(v, kSpacings, {S::Leading, S::Linspace, S::Trailing});
     },
     [](const SchedulerConfig& c) { return json(to_string(c.timestep_spacing)); }},
    {"steps_offset", [](const Ctx& x, const json& v) { x.c.steps_offset = int(x.integer(v, 0, kMaxTrainTimesteps)); },
     [](const SchedulerConfig& c) { return json(c.steps_offset); }},
    {"rescale_betas_zero_snr", [](const Ctx& x, const json& v) { x.c.rescale_betas_zero_snr = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.rescale_betas_zero_snr); }},
    {"set_alpha_to_one", [](const Ctx& x, const json& v) { x.c.set_alpha_to_one = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.set_alpha_to_one); }},
    {"skip_prk_steps", [](const Ctx& x, const json& v) { x.c.skip_prk_steps = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.skip_prk_steps); }},
    {"solver_order",
     [](const Ctx& x, const json& v) {
       const int64_t o = x.integer(v, 1, std::numeric_limits<int32_t>::max());
       if (o > 3) x.bad(v, "unsupported: diffrt implements solver_order 1, 2 and 3", ErrorCode::Unsupported);
       x.c.solver_order = int(o);
     },
     [](const SchedulerConfig& c) { return json(c.solver_order); }},
    {"algorithm_type",
     [](const Ctx& x, const json& v) {
       using A = DpmAlgorithm;
       x.c.algorithm_type = x.choice(v, kAlgorithms, {A::DpmSolverPP, A::SdeDpmSolverPP, A::DpmSolver, A::SdeDpmSolver});
     },
     [](const SchedulerConfig& c) { return json(to_string(c.algorithm_type)); }},
    {"solver_type",
     [](const Ctx& x, const json& v) {
       using S = SolverType;
       // The constructors' rewrites: DPM turns logrho/bh1/bh2 into midpoint, UniPC turns midpoint/heun/logrho into bh2.
       if (!v.is_string()) x.bad(v, "must be a string, one of midpoint, heun, logrho, bh1, bh2");
       const std::string s = v.get<std::string>();
       if (s != "midpoint" && s != "heun" && s != "logrho" && s != "bh1" && s != "bh2")
         x.bad(v, "unknown value; valid values: midpoint, heun, logrho, bh1, bh2");
       if (x.k == K::UniPC) x.c.solver_type = s == "bh1" ? S::Bh1 : S::Bh2;
       else x.c.solver_type = s == "heun" ? S::Heun : S::Midpoint;
     },
     [](const SchedulerConfig& c) { return json(to_string(c.solver_type)); }},
    {"lower_order_final", [](const Ctx& x, const json& v) { x.c.lower_order_final = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.lower_order_final); }},
    {"euler_at_final", [](const Ctx& x, const json& v) { x.c.euler_at_final = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.euler_at_final); }},
    {"use_karras_sigmas",
     [](const Ctx& x, const json& v) { x.c.use_karras_sigmas = v.is_null() ? false : x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.use_karras_sigmas); }},
    {"use_lu_lambdas", [](const Ctx& x, const json& v) { x.c.use_lu_lambdas = v.is_null() ? false : x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.use_lu_lambdas); }},
    {"final_sigmas_type",
     [](const Ctx& x, const json& v) {
       x.c.final_sigmas_type = x.choice(v, kFinalSigmas, {FinalSigmas::Zero, FinalSigmas::SigmaMin});
     },
     [](const SchedulerConfig& c) { return json(to_string(c.final_sigmas_type)); }},
    {"lambda_min_clipped",
     [](const Ctx& x, const json& v) {
       // diffusers saves the default -inf as -Infinity (parse_scheduler_config_text turns it into a string).
       if (v.is_string() && (v.get<std::string>() == "-inf" || v.get<std::string>() == "-Infinity")) {
         x.c.lambda_min_clipped = -std::numeric_limits<double>::infinity();
         return;
       }
       if (!v.is_number()) x.bad(v, "must be a number or \"-inf\"");
       x.c.lambda_min_clipped = x.number(v);
     },
     [](const SchedulerConfig& c) { return dump_double(c.lambda_min_clipped); }},
    {"interpolation_type",
     [](const Ctx& x, const json& v) {
       x.c.interpolation_type = x.choice(v, kInterpolations, {Interpolation::Linear, Interpolation::LogLinear});
     },
     [](const SchedulerConfig& c) { return json(to_string(c.interpolation_type)); }},
    {"sigma_min",
     [](const Ctx& x, const json& v) {
       x.c.has_sigma_min = !v.is_null();
       if (v.is_null()) return;
       x.c.sigma_min = x.number(v);
       if (!(x.c.sigma_min > 0)) x.bad(v, "must be positive");
     },
     [](const SchedulerConfig& c) { return c.has_sigma_min ? json(c.sigma_min) : json(nullptr); }},
    {"sigma_max",
     [](const Ctx& x, const json& v) {
       x.c.has_sigma_max = !v.is_null();
       if (v.is_null()) return;
       x.c.sigma_max = x.number(v);
       if (!(x.c.sigma_max > 0)) x.bad(v, "must be positive");
     },
     [](const SchedulerConfig& c) { return c.has_sigma_max ? json(c.sigma_max) : json(nullptr); }},
    {"timestep_type",
     [](const Ctx& x, const json& v) {
       x.c.timestep_type = x.choice(v, kTimestepTypes, {TimestepType::Discrete, TimestepType::Continuous});
     },
     [](const SchedulerConfig& c) { return json(to_string(c.timestep_type)); }},
    {"predict_x0", [](const Ctx& x, const json& v) { x.c.predict_x0 = x.boolean(v); },
     [](const SchedulerConfig& c) { return json(c.predict_x0); }},
    {"disable_corrector",
     [](const Ctx& x, const json& v) {
       x.c.disable_corrector.clear();
       if (!v.is_array()) x.bad(v, "must be an array of step indices");
       if (v.size() > 100000) x.bad(v, "too many entries");
       for (const json& e : v) x.c.disable_corrector.push_back(int(x.integer(e, 0, kMaxTrainTimesteps)));
     },
     [](const SchedulerConfig& c) { return json(c.disable_corrector); }},
    {"solver_p",
     [](const Ctx& x, const json& v) {
       if (!v.is_null()) x.bad(v, "unsupported: only null (no external predictor scheduler)", ErrorCode::Unsupported);
     },
     [](const SchedulerConfig&) { return json(nullptr); }},
    {"original_inference_steps",
     [](const Ctx& x, const json& v) { x.c.original_inference_steps = int(x.integer(v, 1, kMaxTrainTimesteps)); },
     [](const SchedulerConfig& c) { return json(c.original_inference_steps); }},
    {"timestep_scaling", [](const Ctx& x, const json& v) { x.c.timestep_scaling = x.number(v); },
     [](const SchedulerConfig& c) { return json(c.timestep_scaling); }},
};

const KeyDef* find_key_def(const std::string& name) {
  for (const KeyDef& d : kKeys)
    if (name == d.name) return &d;
  return nullptr;
}

const std::vector<std::string> kClassKeys[kNumSchedulerClasses] = {
    // DDPMScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "variance_type", "clip_sample",
     "prediction_type", "thresholding", "dynamic_thresholding_ratio", "clip_sample_range", "sample_max_value",
     "timestep_spacing", "steps_offset", "rescale_betas_zero_snr"},
    // DDIMScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "clip_sample",
     "set_alpha_to_one", "steps_offset", "prediction_type", "thresholding", "dynamic_thresholding_ratio",
     "clip_sample_range", "sample_max_value", "timestep_spacing", "rescale_betas_zero_snr"},
    // PNDMScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "skip_prk_steps",
     "set_alpha_to_one", "prediction_type", "timestep_spacing", "steps_offset"},
    // DPMSolverMultistepScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "solver_order",
     "prediction_type", "thresholding", "dynamic_thresholding_ratio", "sample_max_value", "algorithm_type",
     "solver_type", "lower_order_final", "euler_at_final", "use_karras_sigmas", "use_lu_lambdas", "final_sigmas_type",
     "lambda_min_clipped", "variance_type", "timestep_spacing", "steps_offset", "rescale_betas_zero_snr"},
    // EulerDiscreteScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
     "interpolation_type", "use_karras_sigmas", "sigma_min", "sigma_max", "timestep_spacing", "timestep_type",
     "steps_offset", "rescale_betas_zero_snr"},
    // EulerAncestralDiscreteScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
     "timestep_spacing", "steps_offset", "rescale_betas_zero_snr"},
    // HeunDiscreteScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
     "use_karras_sigmas", "clip_sample", "clip_sample_range", "timestep_spacing", "steps_offset"},
    // UniPCMultistepScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "solver_order",
     "prediction_type", "thresholding", "dynamic_thresholding_ratio", "sample_max_value", "predict_x0", "solver_type",
     "lower_order_final", "disable_corrector", "solver_p", "use_karras_sigmas", "timestep_spacing", "steps_offset"},
    // LCMScheduler
    {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "original_inference_steps",
     "clip_sample", "clip_sample_range", "set_alpha_to_one", "steps_offset", "prediction_type", "thresholding",
     "dynamic_thresholding_ratio", "sample_max_value", "timestep_spacing", "timestep_scaling",
     "rescale_betas_zero_snr"},
};

void validate_impl(const SchedulerConfig& c, const std::string& origin, ErrorCode code) {
  auto num = [](double d) { json v = d; return short_dump(v); };
  auto takes = [&](const char* key) { return scheduler_class_takes(c.klass, key); };
  const std::string cls = std::string(" (") + scheduler_class_name(c.klass) + ")";
  if (c.num_train_timesteps < 1 || c.num_train_timesteps > kMaxTrainTimesteps)
    bad_field(code, origin, "num_train_timesteps", std::to_string(c.num_train_timesteps),
              "must be in [1, " + std::to_string(kMaxTrainTimesteps) + "]");
  if (!(c.beta_start > 0.0 && c.beta_start < 1.0))
    bad_field(code, origin, "beta_start", num(c.beta_start), "must be in (0, 1)");
  if (!(c.beta_end > 0.0 && c.beta_end < 1.0)) bad_field(code, origin, "beta_end", num(c.beta_end), "must be in (0, 1)");
  if (c.beta_start > c.beta_end)
    bad_field(code, origin, "beta_start", num(c.beta_start), "must not exceed beta_end = " + num(c.beta_end));
  if (c.has_trained_betas) {
    if (c.trained_betas.size() != size_t(c.num_train_timesteps))
      bad_field(code, origin, "trained_betas", "[" + std::to_string(c.trained_betas.size()) + " values]",
                "length must equal num_train_timesteps = " + std::to_string(c.num_train_timesteps));
    for (size_t i = 0; i < c.trained_betas.size(); ++i)
      if (!(c.trained_betas[i] > 0.0 && c.trained_betas[i] <= 1.0))
        bad_field(code, origin, "trained_betas", "[" + std::to_string(i) + "] " + num(c.trained_betas[i]),
                  "each beta must be in (0, 1]");
  }
  if (takes("clip_sample_range") && !(c.clip_sample_range > 0.0 && std::isfinite(c.clip_sample_range)))
    bad_field(code, origin, "clip_sample_range", num(c.clip_sample_range), "must be a positive finite number");
  if (takes("dynamic_thresholding_ratio") && !(c.dynamic_thresholding_ratio > 0.0 && c.dynamic_thresholding_ratio <= 1.0))
    bad_field(code, origin, "dynamic_thresholding_ratio", num(c.dynamic_thresholding_ratio), "must be in (0, 1]");
  if (takes("sample_max_value") && !(c.sample_max_value > 0.0 && std::isfinite(c.sample_max_value)))
    bad_field(code, origin, "sample_max_value", num(c.sample_max_value), "must be a positive finite number");
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    bad_field(code, origin, "steps_offset", std::to_string(c.steps_offset),
              "must be in [0, num_train_timesteps - 1 = " + std::to_string(c.num_train_timesteps - 1) + "]");
  if (c.klass == K::DpmSolverMultistep) {
    if (c.solver_order < 1 || c.solver_order > 3)
      bad_field(code, origin, "solver_order", std::to_string(c.solver_order), "must be 1, 2 or 3" + cls);
    const bool pp = c.algorithm_type == DpmAlgorithm::DpmSolverPP || c.algorithm_type == DpmAlgorithm::SdeDpmSolverPP;
    if (!pp && c.final_sigmas_type == FinalSigmas::Zero)
      bad_field(code, origin, "final_sigmas_type", "\"zero\"",
                std::string("is not supported with algorithm_type ") + to_string(c.algorithm_type) +
                    " (diffusers raises); use \"sigma_min\"" + cls);
    if (c.solver_type != SolverType::Midpoint && c.solver_type != SolverType::Heun)
      bad_field(code, origin, "solver_type", to_string(c.solver_type), "must be midpoint or heun" + cls);
    if (std::isnan(c.lambda_min_clipped) || c.lambda_min_clipped == std::numeric_limits<double>::infinity())
      bad_field(code, origin, "lambda_min_clipped", num(c.lambda_min_clipped), "must be a number or -inf" + cls);
  }
  if (c.klass == K::UniPC) {
    if (c.solver_order < 1 || c.solver_order > 3)
      bad_field(code, origin, "solver_order", std::to_string(c.solver_order), "must be 1, 2 or 3" + cls);
    if (c.solver_type != SolverType::Bh1 && c.solver_type != SolverType::Bh2)
      bad_field(code, origin, "solver_type", to_string(c.solver_type), "must be bh1 or bh2" + cls);
  }
  if (c.klass == K::EulerDiscrete) {
    if (c.has_sigma_min && !(c.sigma_min > 0 && std::isfinite(c.sigma_min)))
      bad_field(code, origin, "sigma_min", num(c.sigma_min), "must be positive" + cls);
    if (c.has_sigma_max && !(c.sigma_max > 0 && std::isfinite(c.sigma_max)))
      bad_field(code, origin, "sigma_max", num(c.sigma_max), "must be positive" + cls);
  }
  if (c.klass == K::Lcm) {
    if (c.original_inference_steps < 1 || c.original_inference_steps > c.num_train_timesteps)
      bad_field(code, origin, "original_inference_steps", std::to_string(c.original_inference_steps),
                "must be in [1, num_train_timesteps = " + std::to_string(c.num_train_timesteps) + "]" + cls);
    if (!std::isfinite(c.timestep_scaling))
      bad_field(code, origin, "timestep_scaling", num(c.timestep_scaling), "must be finite" + cls);
  }
}

// Parses `values` (keys already filtered by _use_default_values, underscore keys dropped) as class k, with
// `overrides` (may be null) taking precedence for k's keys.
SchedulerConfig parse_as(K k, const json& values, const json* overrides, const std::string& class_name,
                         const std::string& origin) {
  SchedulerConfig c = scheduler_class_defaults(k);
  c.class_name = class_name;
  // A config without _class_name (diffrt's DDPM/DDIM model files before the sampler classes) takes the keys of
  // both DDPMScheduler and DDIMScheduler: set_alpha_to_one is read along with DDPM's keys.
  std::vector<std::string> keys = kClassKeys[int(k)];
  if (class_name.empty() && k == K::Ddpm) keys.push_back("set_alpha_to_one");
  for (const std::string& key : keys) {
    const json* v = nullptr;
    if (overrides) {
      auto it = overrides->find(key);
      if (it != overrides->end()) v = &*it;
    }
    if (!v) {
      auto it = values.find(key);
      if (it != values.end()) v = &*it;
    }
    if (!v) continue;
    const KeyDef* d = find_key_def(key);
    if (!d) fail(ErrorCode::Internal, "scheduler config: no parser for key " + key);
    d->parse(Ctx{c, k, origin, key}, *v);
    c.explicit_keys.push_back(key);
  }
  for (auto it = values.begin(); it != values.end(); ++it) {
    const std::string& key = it.key();
    if (key.empty() || key[0] == '_' || std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    c.hidden[key] = it.value().dump();
  }
  std::sort(c.explicit_keys.begin(), c.explicit_keys.end());
  validate_impl(c, origin, ErrorCode::InvalidModel);
  return c;
}

// The keys a config passes on through from_config: its explicit keys (as JSON) and its hidden keys.
json inheritable(const SchedulerConfig& c) {
  json j = json::object();
  for (const auto& [k, text] : c.hidden) j[k] = json::parse(text);
  for (const std::string& k : c.explicit_keys) {
    const KeyDef* d = find_key_def(k);
    if (d) j[k] = d->dump(c);
  }
  return j;
}

}  // namespace

const std::vector<std::string>& scheduler_class_keys(SchedulerClass k) {
  if (int(k) >= kNumSchedulerClasses) fail(ErrorCode::Internal, "bad scheduler class");
  return kClassKeys[int(k)];
}

bool scheduler_class_takes(SchedulerClass k, const std::string& key) {
  const auto& keys = scheduler_class_keys(k);
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

bool scheduler_key_explicit(const SchedulerConfig& c, const std::string& key) {
  return std::binary_search(c.explicit_keys.begin(), c.explicit_keys.end(), key);
}

SchedulerConfig scheduler_class_defaults(SchedulerClass k) {
  SchedulerConfig c;
  c.klass = k;
  c.class_name = scheduler_class_name(k);
  switch (k) {
    case K::Ddpm: c.clip_sample = true; c.timestep_spacing = TimestepSpacing::Leading; break;
    case K::Ddim: c.clip_sample = true; c.set_alpha_to_one = true; c.timestep_spacing = TimestepSpacing::Leading; break;
    case K::Pndm: c.set_alpha_to_one = false; c.timestep_spacing = TimestepSpacing::Leading; break;
    case K::DpmSolverMultistep:
      c.timestep_spacing = TimestepSpacing::Linspace;
      c.variance_type_null = true;
      c.solver_type = SolverType::Midpoint;
      break;
    case K::EulerDiscrete: c.timestep_spacing = TimestepSpacing::Linspace; break;
    case K::EulerAncestral: c.timestep_spacing = TimestepSpacing::Linspace; break;
    case K::Heun:
      c.beta_start = 0.00085; c.beta_end = 0.012; c.beta_schedule = BetaSchedule::Linear;
      c.clip_sample = false;
      c.timestep_spacing = TimestepSpacing::Linspace;
      break;
    case K::UniPC: c.timestep_spacing = TimestepSpacing::Linspace; c.solver_type = SolverType::Bh2; break;
    case K::Lcm:
      c.beta_start = 0.00085; c.beta_end = 0.012; c.beta_schedule = BetaSchedule::ScaledLinear;
      c.clip_sample = false; c.set_alpha_to_one = true;
      c.timestep_spacing = TimestepSpacing::Leading;
      break;
  }
  return c;
}

nlohmann::json parse_scheduler_config_text(const std::string& text, const std::string& origin) {
  // Python's json writes float('-inf') as -Infinity (not JSON): turn the bare tokens NaN, Infinity and
  // -Infinity into strings outside of string literals, then parse strictly.
  std::string out;
  out.reserve(text.size() + 16);
  bool in_str = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_str) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) out += text[++i];
      else if (ch == '"') in_str = false;
      continue;
    }
    if (ch == '"') { in_str = true; out += ch; continue; }
    auto token = [&](const char* t) { return text.compare(i, std::char_traits<char>::length(t), t) == 0; };
    if (token("-Infinity")) { out += "\"-Infinity\""; i += 8; continue; }
    if (token("Infinity")) { out += "\"Infinity\""; i += 7; continue; }
    if (token("NaN")) { out += "\"NaN\""; i += 2; continue; }
    out += ch;
  }
  return parse_json_strict(out, origin);
}

SchedulerConfig scheduler_config_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": scheduler config must be a JSON object");
  std::string class_name;
  K k = K::Ddpm;
  if (auto it = j.find("_class_name"); it != j.end()) {
    if (!it->is_string()) bad_field(ErrorCode::InvalidModel, origin, "_class_name", short_dump(*it), "must be a string");
    class_name = it->get<std::string>();
    bool found = false;
    for (int i = 0; i < kNumSchedulerClasses; ++i)
      if (class_name == scheduler_class_name(K(i))) { k = K(i); found = true; }
    if (!found) {
      std::string list;
      for (int i = 0; i < kNumSchedulerClasses; ++i) list += std::string(i ? ", " : "") + scheduler_class_name(K(i));
      fail(ErrorCode::Unsupported, origin + ": unsupported scheduler _class_name=" + short_dump(*it) +
                                       " (supported: " + list + ")");
    }
  }
  json values = json::object();
  std::vector<std::string> used_defaults;
  if (auto it = j.find("_use_default_values"); it != j.end()) {
    if (!it->is_array()) bad_field(ErrorCode::InvalidModel, origin, "_use_default_values", short_dump(*it), "must be an array of key names");
    for (const json& e : *it) {
      if (!e.is_string()) bad_field(ErrorCode::InvalidModel, origin, "_use_default_values", short_dump(e), "entries must be strings");
      used_defaults.push_back(e.get<std::string>());
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key().empty() || it.key()[0] == '_') continue;
    if (std::find(used_defaults.begin(), used_defaults.end(), it.key()) != used_defaults.end()) continue;
    values[it.key()] = it.value();
  }
  SchedulerConfig c = parse_as(k, values, nullptr, class_name, origin);
  if (class_name.empty()) c.class_name.clear();
  return c;
}

SchedulerConfig resolve_scheduler_config(const SchedulerConfig& src, SchedulerClass target, const json& overrides,
                                         const std::string& origin) {
  if (!overrides.is_null() && !overrides.is_object())
    fail(ErrorCode::InvalidArgument, origin + ": scheduler overrides must be a JSON object");
  const json values = inheritable(src);
  return parse_as(target, values, overrides.is_object() ? &overrides : nullptr, scheduler_class_name(target), origin);
}

SchedulerConfig scheduler_config_for(const SchedulerConfig& c, SchedulerClass k) {
  if (k == c.klass) return c;
  const bool dd = (k == K::Ddpm || k == K::Ddim) && (c.klass == K::Ddpm || c.klass == K::Ddim);
  if (dd) {
    // DDPM and DDIM take the same keys (but variance_type / set_alpha_to_one) with the same defaults, so
    // from_config between them changes nothing a run reads; copying also keeps fields set in code.
    SchedulerConfig r = c;
    r.klass = k;
    r.class_name = scheduler_class_name(k);
    return r;
  }
  return resolve_scheduler_config(c, k, json::object(), std::string(scheduler_class_name(c.klass)) + " config");
}

SchedulerConfig apply_sd_pipeline_rewrite(const SchedulerConfig& c) {
  SchedulerConfig r = c;
  if (scheduler_class_takes(r.klass, "steps_offset") && r.steps_offset != 1) r.steps_offset = 1;
  if (scheduler_class_takes(r.klass, "clip_sample") && r.clip_sample) r.clip_sample = false;
  return r;
}

json scheduler_config_to_json(const SchedulerConfig& c) {
  json j = json::object();
  // A DDPM config read without _class_name stays without one (it also carries set_alpha_to_one, see parse_as).
  if (!(c.class_name.empty() && c.klass == K::Ddpm)) j["_class_name"] = scheduler_class_name(c.klass);
  for (const auto& [k, text] : c.hidden) j[k] = json::parse(text);
  json defaults = json::array();
  for (const std::string& key : kClassKeys[int(c.klass)]) {
    j[key] = find_key_def(key)->dump(c);
    if (!scheduler_key_explicit(c, key)) defaults.push_back(key);
  }
  for (const std::string& key : c.explicit_keys)  // set_alpha_to_one of a config without _class_name
    if (!j.contains(key)) j[key] = find_key_def(key)->dump(c);
  j["_use_default_values"] = defaults;
  return j;
}

void validate_scheduler_config(const SchedulerConfig& c, const std::string& origin) {
  validate_impl(c, origin, ErrorCode::InvalidArgument);
}

const char* to_string(BetaSchedule v) { return enum_name(v, kBetaSchedules); }
const char* to_string(TimestepSpacing v) { return enum_name(v, kSpacings); }
const char* to_string(VarianceType v) { return enum_name(v, kVarianceTypes); }
const char* to_string(PredictionType v) { return enum_name(v, kPredictionTypes); }
const char* to_string(DpmAlgorithm v) { return enum_name(v, kAlgorithms); }
const char* to_string(SolverType v) { return enum_name(v, kSolverTypes); }
const char* to_string(FinalSigmas v) { return enum_name(v, kFinalSigmas); }
const char* to_string(Interpolation v) { return enum_name(v, kInterpolations); }
const char* to_string(TimestepType v) { return enum_name(v, kTimestepTypes); }

}  // namespace diffrt
