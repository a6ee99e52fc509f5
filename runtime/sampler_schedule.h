// What set_timesteps(N) gives for each scheduler class, exactly as diffusers 0.27.2 computes it
// (tests/fixtures/samplers/README.md §D1, §D4-§D11): the timestep list (with its dtype), the sigmas (with the
// appended final sigma), init_noise_sigma, the order, and per model call the scale_model_input divisor; plus the
// image-to-image start (get_timesteps / set_begin_index / add_noise) of the SD img2img pipeline.
#pragma once
#include <cstdint>
#include <vector>

#include "model/scheduler_config.h"
#include "runtime/schedule.h"

namespace diffrt {

enum class TimestepDType : uint8_t { Int64, Float32, Float64 };

struct ClassSchedule {
  SchedulerClass klass = SchedulerClass::Ddpm;
  int num_inference_steps = 0;     // N as requested
  std::vector<double> timesteps;   // scheduler.timesteps, exact values (int64, float32 or float64 as ts_dtype)
  TimestepDType ts_dtype = TimestepDType::Int64;
  std::vector<float> sigmas;       // with the final sigma; empty for DDPM, DDIM, PNDM, LCM
  float init_noise_sigma = 1.0f;
  bool init_noise_sigma_tensor = false;  // a 0-dim float32 tensor (Euler, Euler a, Heun) or a Python float
  int order = 1;                   // scheduler.order (Heun: 2)
  // PNDM: the ascending base grid `_ts` and the PRK / PLMS split; LCM: nothing extra.
  int pndm_prk_calls = 0;          // 12 with PRK warm-up, else 0
  std::vector<float> scale_divisor;  // per timestep entry: what scale_model_input divides by (1 = identity)
};

// scheduler.set_timesteps(N) for the config's class. Throws Error(InvalidArgument) where diffusers raises
// (PNDM PRK with N < 4, LCM with N > original_inference_steps, N outside [1, T]) and for schedules diffrt
// does not run (a timestep outside [0, T), e.g. trailing spacing with N+1 values ending in -1).
ClassSchedule class_schedule(const SchedulerConfig& c, const ScheduleTables& tables, int num_steps);

// The img2img start of StableDiffusionImg2ImgPipeline (get_timesteps, set_begin_index, add_noise).
struct Img2ImgStart {
  int init_timestep = 0, t_start = 0;
  int begin_index = 0;       // t_start * order: the first timestep entry run
  bool has_begin_index = false;  // the class has set_begin_index (not PNDM, DDIM, DDPM)
  double latent_timestep = 0;    // timesteps[begin_index]
  float noise_a = 1, noise_b = 0;  // add_noise(x0, n, latent_timestep) = a*x0 + b*n (per family op order)
};
// Throws Error(InvalidArgument) unless 0 <= strength <= 1 and N*strength >= 1 (diffusers crashes or raises).
Img2ImgStart img2img_start(const SchedulerConfig& c, const ScheduleTables& tables, const ClassSchedule& s,
                           double strength);
// add_noise coefficients at timestep-list index `index` (step_index / begin_index path; for the
// alphas_cumprod family the timestep value at that index): x = a*x0 + b*noise.
struct NoiseMix {
  float a = 1, b = 0;
  bool sigma_family = false;  // Euler/Euler a/Heun: x0 + noise*sigma (a = 1, b = sigma, that op order)
};
NoiseMix add_noise_at(const SchedulerConfig& c, const ScheduleTables& tables, const ClassSchedule& s, int index);
// The same for the alphas_cumprod family at an explicit timestep value t (DDPM, DDIM, PNDM, LCM).
NoiseMix add_noise_acp(const ScheduleTables& tables, int64_t t);

}  // namespace diffrt
