// DDPM/DDIM noise schedules exactly as diffusers 0.27.2 computes them (our fixtures come from it):
// the scheduler config (scheduler_config.json) with strict validation, betas and alphas_cumprod
// in float32 (torch.linspace / cumprod semantics), the inference timesteps for N steps per
// spacing, and the per-step scalar coefficients the fused step kernel consumes.
//
// Differences from the diffusers "main" spec (shared/research/diffusers_spec.md §9), following 0.27.2:
//  * DDPM's previous timestep is t - T div N for set_timesteps(N) (0.27.2 previous_timestep());
//    newer diffusers use the next list entry. Only custom timestep lists use the next entry.
//  * beta_schedule "laplace" does not exist in 0.27.2; "sigmoid" exists for DDPM only in
//    diffusers (DDIM raises NotImplementedError) -- we allow it for both (same formula).
//  * variance_type null behaves as fixed_small in 0.27.2 (no branch matches), so we accept it.
// Precision: torch does this in float32 (alphas_cumprod is float32, every coefficient is a 0-dim
// float32 tensor op), so we do too; the "double" of DESIGN.md would NOT match the fixtures.
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

struct ScheduleTables {
  std::vector<float> betas;           // [T] float32, as torch stores them
  std::vector<float> alphas_cumprod;  // [T] float32, cumprod accumulated in double per element
  float final_alpha_cumprod = 1.f;    // DDIM: 1 if set_alpha_to_one else alphas_cumprod[0]
};
ScheduleTables compute_schedule(const SchedulerConfig& c);

// torch.linspace(start, end, steps, dtype=float32) bit for bit (AVX2 CPU build, steps <= 32768;
// larger counts may differ by 1 ulp where torch splits the range across threads).
std::vector<float> torch_linspace_f32(double start, double end, int64_t steps);

// Timesteps of set_timesteps(num_steps), descending. Throws InvalidArgument unless
// 1 <= num_steps <= num_train_timesteps, and if a timestep falls outside [0, T) (steps_offset).
std::vector<int64_t> inference_timesteps(const SchedulerConfig& c, int num_steps);
// diffusers 0.27.2: t - T div N for both DDPM and DDIM.
int64_t previous_timestep(const SchedulerConfig& c, int num_steps, int64_t t);

// Float32 coefficients for one step at timestep t (prev = previous_timestep). eta is DDIM's.
StepCoeffs step_coeffs(const SchedulerConfig& c, const ScheduleTables& s, SamplerKind kind,
                       int num_steps, int64_t t, float eta);

// Timesteps plus coefficients for a whole run.
struct SamplingPlan {
  SamplerKind kind = SamplerKind::Ddpm;
  std::vector<int64_t> timesteps;
  std::vector<StepCoeffs> coeffs;
};
SamplingPlan make_sampling_plan(const SchedulerConfig& c, SamplerKind kind, int num_steps, float eta);

}  // namespace diffrt
