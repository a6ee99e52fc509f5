// A diffusers scheduler config (scheduler_config.json) with strict validation: pure data, stored in the model
// file and read back from it. What the runtime computes from it (betas, alphas_cumprod, timesteps, step
// coefficients) is runtime/schedule.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kernels/scheduler_step/scheduler_step.h"

namespace diffrt {

enum class BetaSchedule : uint8_t { Linear, ScaledLinear, SquaredCosCapV2, Sigmoid };
enum class TimestepSpacing : uint8_t { Leading, Linspace, Trailing };

// Every constructor argument of DDPMScheduler and DDIMScheduler, with diffusers' defaults.
struct SchedulerConfig {
  std::string class_name;  // "_class_name" ("" when absent)
  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  bool has_trained_betas = false;
  std::vector<double> trained_betas;  // [num_train_timesteps] when has_trained_betas
  VarianceType variance_type = VarianceType::FixedSmall;  // DDPM only
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  PredictionType prediction_type = PredictionType::Epsilon;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  TimestepSpacing timestep_spacing = TimestepSpacing::Leading;
  int steps_offset = 0;
  bool set_alpha_to_one = true;  // DDIM only
  bool rescale_betas_zero_snr = false;
};

// Parses a diffusers scheduler config object. Missing key -> diffusers default; present keys are
// type-checked strictly (no strings for numbers, no floats for integers, no ints for bools);
// out-of-range values and unknown enum strings throw Error(InvalidModel) naming `origin`, the key
// and the value (enum errors list the valid values). variance_type "fixed_large_log" throws
// Error(Unsupported): diffusers takes sqrt(log(beta)) there, i.e. NaN. Unknown keys are ignored.
SchedulerConfig scheduler_config_from_json(const nlohmann::json& j, const std::string& origin);
nlohmann::json scheduler_config_to_json(const SchedulerConfig& c);
// Re-checks a config built in code (same rules as the parser); throws Error(InvalidArgument).
void validate_scheduler_config(const SchedulerConfig& c, const std::string& origin);

const char* to_string(BetaSchedule v);
const char* to_string(TimestepSpacing v);
const char* to_string(VarianceType v);
const char* to_string(PredictionType v);
const char* to_string(SamplerKind v);

}  // namespace diffrt
