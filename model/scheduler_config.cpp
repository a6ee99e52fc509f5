// Scheduler configs as diffusers 0.27.2 reads them (contract in scheduler_config.h).
// Verified by tests/schedule_test.cpp against fixtures written by tests/fixtures/make_scheduler_fixtures.py.
#include "model/scheduler_config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace diffrt {
namespace {

using json = nlohmann::json;

std::string short_dump(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

[[noreturn]] void bad_field(ErrorCode code, const std::string& origin, const std::string& key,
                            const std::string& value, const std::string& why) {
  fail(code, origin + ": scheduler config field '" + key + "' = " + value + ": " + why);
}

const json* find_key(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

bool read_bool(const json& j, const char* key, bool def, const std::string& origin) {
  const json* v = find_key(j, key);
  if (!v) return def;
  if (!v->is_boolean()) bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "must be true or false");
  return v->get<bool>();
}

int64_t read_int(const json& j, const char* key, int64_t def, const std::string& origin) {
  const json* v = find_key(j, key);
  if (!v) return def;
  if (!v->is_number_integer()) bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "must be an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "out of range");
  return v->get<int64_t>();
}

double read_number(const json& j, const char* key, double def, const std::string& origin) {
  const json* v = find_key(j, key);
  if (!v) return def;
  if (!v->is_number()) bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "must be a number");
  double d = v->get<double>();
  if (!std::isfinite(d)) bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "must be finite");
  return d;
}

template <typename E, size_t N>
E read_enum(const json& j, const char* key, E def, const std::pair<const char*, E> (&table)[N],
            const std::string& origin) {
  const json* v = find_key(j, key);
  if (!v) return def;
  std::string valid;
  for (size_t i = 0; i < N; ++i) valid += std::string(i ? ", " : "") + table[i].first;
  if (!v->is_string()) bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "must be a string, one of " + valid);
  const std::string s = v->get<std::string>();
  for (size_t i = 0; i < N; ++i)
    if (s == table[i].first) return table[i].second;
  bad_field(ErrorCode::InvalidModel, origin, key, short_dump(*v), "unknown value; valid values: " + valid);
}

const std::pair<const char*, BetaSchedule> kBetaSchedules[] = {
    {"linear", BetaSchedule::Linear}, {"scaled_linear", BetaSchedule::ScaledLinear},
    {"squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2}, {"sigmoid", BetaSchedule::Sigmoid}};
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

template <typename E, size_t N>
const char* enum_name(E v, const std::pair<const char*, E> (&table)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (table[i].second == v) return table[i].first;
  return "?";
}

constexpr int kMaxTrainTimesteps = 100000;

void validate_impl(const SchedulerConfig& c, const std::string& origin, ErrorCode code) {
  auto num = [](double d) { json v = d; return short_dump(v); };
  if (c.num_train_timesteps < 1 || c.num_train_timesteps > kMaxTrainTimesteps)
    bad_field(code, origin, "num_train_timesteps", std::to_string(c.num_train_timesteps),
              "must be in [1, " + std::to_string(kMaxTrainTimesteps) + "]");
  if (!(c.beta_start > 0.0 && c.beta_start < 1.0))
    bad_field(code, origin, "beta_start", num(c.beta_start), "must be in (0, 1)");
  if (!(c.beta_end > 0.0 && c.beta_end < 1.0))
    bad_field(code, origin, "beta_end", num(c.beta_end), "must be in (0, 1)");
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
  if (!(c.clip_sample_range > 0.0 && std::isfinite(c.clip_sample_range)))
    bad_field(code, origin, "clip_sample_range", num(c.clip_sample_range), "must be a positive finite number");
  if (!(c.dynamic_thresholding_ratio > 0.0 && c.dynamic_thresholding_ratio <= 1.0))
    bad_field(code, origin, "dynamic_thresholding_ratio", num(c.dynamic_thresholding_ratio), "must be in (0, 1]");
  if (!(c.sample_max_value > 0.0 && std::isfinite(c.sample_max_value)))
    bad_field(code, origin, "sample_max_value", num(c.sample_max_value), "must be a positive finite number");
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    bad_field(code, origin, "steps_offset", std::to_string(c.steps_offset),
              "must be in [0, num_train_timesteps - 1 = " + std::to_string(c.num_train_timesteps - 1) + "]");
}

}  // namespace

const char* to_string(BetaSchedule v) { return enum_name(v, kBetaSchedules); }
const char* to_string(TimestepSpacing v) { return enum_name(v, kSpacings); }
const char* to_string(VarianceType v) { return enum_name(v, kVarianceTypes); }
const char* to_string(PredictionType v) { return enum_name(v, kPredictionTypes); }
const char* to_string(SamplerKind v) { return v == SamplerKind::Ddpm ? "ddpm" : "ddim"; }

void validate_scheduler_config(const SchedulerConfig& c, const std::string& origin) {
  validate_impl(c, origin, ErrorCode::InvalidArgument);
}

SchedulerConfig scheduler_config_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": scheduler config must be a JSON object");
  SchedulerConfig c;
  if (const json* v = find_key(j, "_class_name")) {
    if (!v->is_string()) bad_field(ErrorCode::InvalidModel, origin, "_class_name", short_dump(*v), "must be a string");
    c.class_name = v->get<std::string>();
  }
  int64_t T = read_int(j, "num_train_timesteps", c.num_train_timesteps, origin);
  if (T < 1 || T > kMaxTrainTimesteps)
    bad_field(ErrorCode::InvalidModel, origin, "num_train_timesteps", std::to_string(T),
              "must be in [1, " + std::to_string(kMaxTrainTimesteps) + "]");
  c.num_train_timesteps = int(T);
  c.beta_start = read_number(j, "beta_start", c.beta_start, origin);
  c.beta_end = read_number(j, "beta_end", c.beta_end, origin);
  c.beta_schedule = read_enum(j, "beta_schedule", c.beta_schedule, kBetaSchedules, origin);
  if (const json* v = find_key(j, "trained_betas"); v && !v->is_null()) {
    if (!v->is_array()) bad_field(ErrorCode::InvalidModel, origin, "trained_betas", short_dump(*v), "must be null or an array of numbers");
    c.has_trained_betas = true;
    for (const json& e : *v) {
      if (!e.is_number()) bad_field(ErrorCode::InvalidModel, origin, "trained_betas", short_dump(e), "every entry must be a number");
      c.trained_betas.push_back(e.get<double>());
    }
  }
  if (const json* v = find_key(j, "variance_type")) {
    if (v->is_string() && v->get<std::string>() == "fixed_large_log")
      bad_field(ErrorCode::Unsupported, origin, "variance_type", "\"fixed_large_log\"",
                "unsupported: diffusers computes sqrt(log(beta_t)) for it, which is NaN; use fixed_large");
    // 0.27.2: None matches no branch of _get_variance and behaves as fixed_small.
    if (!v->is_null()) c.variance_type = read_enum(j, "variance_type", c.variance_type, kVarianceTypes, origin);
  }
  c.clip_sample = read_bool(j, "clip_sample", c.clip_sample, origin);
  c.clip_sample_range = read_number(j, "clip_sample_range", c.clip_sample_range, origin);
  c.prediction_type = read_enum(j, "prediction_type", c.prediction_type, kPredictionTypes, origin);
  c.thresholding = read_bool(j, "thresholding", c.thresholding, origin);
  c.dynamic_thresholding_ratio = read_number(j, "dynamic_thresholding_ratio", c.dynamic_thresholding_ratio, origin);
  c.sample_max_value = read_number(j, "sample_max_value", c.sample_max_value, origin);
  c.timestep_spacing = read_enum(j, "timestep_spacing", c.timestep_spacing, kSpacings, origin);
  int64_t off = read_int(j, "steps_offset", c.steps_offset, origin);
  if (off < 0 || off >= T)
    bad_field(ErrorCode::InvalidModel, origin, "steps_offset", std::to_string(off),
              "must be in [0, num_train_timesteps - 1 = " + std::to_string(T - 1) + "]");
  c.steps_offset = int(off);
  c.set_alpha_to_one = read_bool(j, "set_alpha_to_one", c.set_alpha_to_one, origin);
  c.rescale_betas_zero_snr = read_bool(j, "rescale_betas_zero_snr", c.rescale_betas_zero_snr, origin);
  validate_impl(c, origin, ErrorCode::InvalidModel);
  return c;
}

json scheduler_config_to_json(const SchedulerConfig& c) {
  json j;
  if (!c.class_name.empty()) j["_class_name"] = c.class_name;
  j["num_train_timesteps"] = c.num_train_timesteps;
  j["beta_start"] = c.beta_start;
  j["beta_end"] = c.beta_end;
  j["beta_schedule"] = to_string(c.beta_schedule);
  j["trained_betas"] = c.has_trained_betas ? json(c.trained_betas) : json(nullptr);
  j["variance_type"] = to_string(c.variance_type);
  j["clip_sample"] = c.clip_sample;
  j["clip_sample_range"] = c.clip_sample_range;
  j["prediction_type"] = to_string(c.prediction_type);
  j["thresholding"] = c.thresholding;
  j["dynamic_thresholding_ratio"] = c.dynamic_thresholding_ratio;
  j["sample_max_value"] = c.sample_max_value;
  j["timestep_spacing"] = to_string(c.timestep_spacing);
  j["steps_offset"] = c.steps_offset;
  j["set_alpha_to_one"] = c.set_alpha_to_one;
  j["rescale_betas_zero_snr"] = c.rescale_betas_zero_snr;
  return j;
}

}  // namespace diffrt
