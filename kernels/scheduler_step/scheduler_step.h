// One fused DDPM/DDIM scheduler update for a batch (diffusers 0.27.2 DDPMScheduler.step /
// DDIMScheduler.step), with classifier-free guidance, noise and the next model input folded in.
//
// Per element, with eps = model output (after CFG), per-step scalars k = StepCoeffs:
//   CFG:        eps = u + s * (c - u)   on the first C channels; variance channels from the cond half
//   x0:         epsilon: (x - k.sqrt_beta_prod_t * eps) / k.sqrt_alpha_prod_t
//               sample:  eps itself;   v_prediction: k.sqrt_alpha_prod_t*x - k.sqrt_beta_prod_t*eps
//   threshold:  per sample s = quantile(|x0|, ratio) (torch linear interpolation), clamp(s, 1, max),
//               x0 = clamp(x0, -s, s) / s;  else if clip_sample: x0 = clamp(x0, -range, range)
//   DDPM:       x = k.x0_coeff*x0 + k.xt_coeff*x  (+ sigma*z if k.add_noise, i.e. t > 0) with
//               sigma = k.noise_std (fixed types), sqrt(v) (learned),
//               exp(0.5*(f*k.log_var_max + (1-f)*k.log_var_min)), f = (v+1)/2 (learned_range)
//   DDIM:       eps' = (x - sqrt_a_t*x0)/sqrt_b_t for sample-prediction or use_clipped_model_output
//               x = k.sqrt_alpha_prod_prev*x0 + k.dir_coeff*eps'  (+ k.std_dev_t*z if k.add_noise)
// Operation order follows torch's eager float32 ops (no FMA) so the CPU reference matches diffusers
// to ~1 ulp; the CUDA kernel must use __fmul_rn/__fadd_rn where it wants bit equality with the ref.
//
// Layouts: model_out [Bm, H, W, Cm] NHWC; x, noise [B, H, W, C]; model_in [Bm, H, W, C].
//   Cm = C, or 2C when the model predicts a variance (learned / learned_range need 2C; other
//   variance types ignore the extra channels, as pipelines that chunk the output do).
//   cfg: Bm = 2B with rows [uncond(B); cond(B)]; otherwise Bm = B.
// Noise z: from `noise` (NHWC) or Philox (kernels/common/philox.h) with element index
//   c*H*W + y*W + x, sample index sample_index_base + n, step `step_index`, tag kTagStep.
// Tests: tests/scheduler_step_test.cpp (against diffusers fixtures); tests/sampler_test.cpp.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace diffrt {

// The scheduler classes diffrt implements (diffusers 0.27.2 names in model/scheduler_config.h). This fused
// DDPM/DDIM step handles Ddpm and Ddim only; every class runs through kernels/sampler_step/.
enum class SamplerKind : uint8_t { Ddpm, Ddim, Pndm, DpmSolverMultistep, EulerDiscrete, EulerAncestral, Heun, UniPC, Lcm };
enum class PredictionType : uint8_t { Epsilon, Sample, VPrediction };
enum class VarianceType : uint8_t { FixedSmall, FixedSmallLog, FixedLarge, Learned, LearnedRange };
enum class NoiseSource : uint8_t { None, Buffer, Philox };

// Host-computed scalars of one step, in float32 exactly as torch computes them from the float32
// alphas_cumprod table (see step_coeffs() in runtime/schedule.h).
struct StepCoeffs {
  int64_t timestep = 0;
  int64_t prev_timestep = 0;
  float alpha_prod_t = 1.f, alpha_prod_prev = 1.f;  // abar[t], abar[prev] (or 1 / final_alpha_cumprod)
  float beta_prod_t = 0.f, beta_prod_prev = 0.f;    // 1 - the above
  float sqrt_alpha_prod_t = 1.f, sqrt_beta_prod_t = 0.f;
  // DDPM
  float current_alpha_t = 1.f, current_beta_t = 0.f;  // abar_t / abar_prev, 1 - that
  float x0_coeff = 0.f, xt_coeff = 0.f;               // posterior mean coefficients
  float noise_std = 0.f;                              // fixed_small / fixed_small_log / fixed_large
  float log_var_min = 0.f, log_var_max = 0.f;         // learned_range: ln(posterior var), ln(beta_t')
  // DDIM
  float sqrt_alpha_prod_prev = 1.f;
  float std_dev_t = 0.f;   // eta * sqrt(variance)
  float dir_coeff = 0.f;   // sqrt(1 - abar_prev - std_dev_t^2)
  bool add_noise = false;  // DDPM: t > 0; DDIM: eta > 0 (drawn even when std_dev_t == 0)
};

struct SchedulerStepParams {
  const float* model_out = nullptr;  // model_out: [Bm, H, W, Cm] fp32
  float* x = nullptr;                // x: [B, H, W, C] fp32, updated in place
  float* model_in = nullptr;         // model_in: [Bm, H, W, C] fp32 or null (next model input)
  const float* noise = nullptr;      // noise: [B, H, W, C] fp32 when noise_source == Buffer
  float* pred_x0 = nullptr;          // pred_x0: [B, H, W, C] fp32 or null (clipped x0, for tests)
  int b = 0, h = 0, w = 0, c = 0, cm = 0;
  bool cfg = false;  // model_out holds [uncond; cond] halves
  float guidance_scale = 1.f;

  SamplerKind kind = SamplerKind::Ddpm;
  PredictionType prediction = PredictionType::Epsilon;
  VarianceType variance = VarianceType::FixedSmall;
  bool clip_sample = true;
  float clip_sample_range = 1.f;
  bool thresholding = false;
  float dynamic_thresholding_ratio = 0.995f;
  float sample_max_value = 1.f;
  bool use_clipped_model_output = false;  // DDIM only
  StepCoeffs k;

  NoiseSource noise_source = NoiseSource::None;
  uint64_t seed = 0;
  uint32_t sample_index_base = 0;  // Philox sample index of batch row 0
  uint32_t step_index = 0;         // Philox step counter (the loop index)
};

// Checks shapes, pointers and flags; throws diffrt::Error(InvalidArgument) naming the field.
void scheduler_step_validate(const SchedulerStepParams& p);
void scheduler_step_ref(const SchedulerStepParams& p);  // CPU reference
void scheduler_step_cuda(const SchedulerStepParams& p, cudaStream_t stream);

// torch.quantile(values, q) with linear interpolation for one row (sorts `values` in place).
float quantile_linear(float* values, int64_t n, float q);

}  // namespace diffrt
