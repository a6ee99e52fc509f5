// The host-side plan of a sampling run, for any scheduler class: computed once, in float32 exactly as diffusers
// 0.27.2 computes it (runtime/sampler_schedule.h for the timesteps and sigmas), then executed by one generic
// step (kernels/sampler_step/) on the CPU or the GPU.
//
//   init row:   X = noise * init_noise_sigma (text-to-image) or add_noise(image, noise, t_start) (image-to-image);
//               next model input = scale_model_input(X)
//   call i:     model(model input, model_timesteps[i]) -> CFG -> rows[i]: the scheduler's step() for this call
//               (its history in persistent slots), the legacy-inpaint blend if asked, then the next model input.
// Model calls follow scheduler.timesteps after the img2img slice: Heun makes 2N-1 calls for N steps, PNDM N+1
// (PLMS) or N+9 (PRK warm-up). Progress counts steps as users do (progress_after[i] steps done after call i).
// Noise: rows that add noise read Z; draws[i] is how many generator draws diffusers makes in call i's step()
// (Euler draws every step and never uses it; LCM not on the last step), which the torch-compatible RNG mode
// must reproduce; Philox noise of call i is keyed (seed, sample, i, kTagStep).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/sampler_step/sampler_step.h"
#include "model/scheduler_config.h"
#include "runtime/sampler_schedule.h"

namespace diffrt {

struct PlanRequest {
  int steps = 0;       // N (set_timesteps)
  float eta = 0.0f;    // DDIM only
  bool use_clipped_model_output = false;  // DDIM only
  // The model returns 2C channels (DDPM learned / learned_range read the variance from channels C..2C).
  bool model_predicts_variance = false;
  // Image-to-image (StableDiffusionImg2ImgPipeline / inpainting): timesteps[t_start*order:] with
  // t_start = N - min(int(N*strength), N), and set_begin_index where the class has it.
  bool img2img = false;
  double strength = 1.0;
  // The loop starts from add_noise(image, noise, first timestep) (needs the IMG input); otherwise from
  // noise * init_noise_sigma. The inpaint pipeline starts from noise at strength 1.
  bool start_from_image = false;
  // StableDiffusionInpaintPipeline with a 4-channel UNet: after every step x = (1-mask)*add_noise(image, noise,
  // next t) + mask*x; the last step blends with the image itself.
  bool legacy_inpaint_blend = false;
};

struct SamplerPlan {
  SchedulerClass klass = SchedulerClass::Ddpm;
  ClassSchedule schedule;              // set_timesteps(N), before the img2img slice
  int begin = 0;                       // first timestep entry run (the img2img slice start)
  int steps = 0;                       // steps as users count them (the progress total)
  std::vector<float> model_timesteps;  // [calls] what the UNet receives (its .float() of the timestep)
  std::vector<double> timestep_values; // [calls] the exact scheduler timestep values (int64/float32/float64)
  std::vector<int> progress_after;     // [calls] steps done after call i
  StepRow init;
  std::vector<StepRow> rows;           // [calls]
  std::vector<uint8_t> draws;          // [calls] generator draws in call i's step()
  int num_slots = 1;                   // persistent registers used: X and slots 1..num_slots-1
  bool reads_image = false, reads_init_noise = false, reads_mask = false;
  float thresh_ratio = 0.995f, thresh_max = 1.0f;
  float init_noise_sigma = 1.0f;
  int calls() const { return int(rows.size()); }
  int total_draws() const;
};

// Throws Error(InvalidArgument) for requests diffusers rejects or diffrt does not run (naming the field), and
// Error(Unsupported) for configurations diffusers itself cannot run (e.g. sde-dpmsolver++ at a third-order step).
SamplerPlan make_sampler_plan(const SchedulerConfig& c, const PlanRequest& r);

}  // namespace diffrt
