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
#include "model/scheduler_config.h"

namespace diffrt {

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
