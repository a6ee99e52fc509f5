// The backend-independent sampling loop for every scheduler class (DDPM, DDIM, PNDM, DPM-Solver(++)/SDE,
// Euler, Euler a, Heun, UniPC, LCM; diffusers 0.27.2 pipeline semantics), with classifier-free guidance,
// image-to-image and inpainting starts. The model is a callback, so the same loop drives the CPU reference,
// the CUDA executor (through a host wrapper) and test fakes.
//
// Which scheduler runs: req.sampler names the class. When cfg is another class's config, the run uses
// scheduler_config_for(cfg, req.sampler) (= req.sampler.from_config(cfg), see model/scheduler_config.h); to
// pick a sampler by name / whole config / with overrides, resolve the config first (select_sampler,
// resolve_scheduler_config) and set req.sampler = config.klass.
// Loop (runtime/sampler_plan.h): x = init row (noise * init_noise_sigma, or add_noise(image) for img2img);
//       for each model call i: out = unet(model_in, t_i, labels); the fused step runs row i (CFG, the
//       scheduler update with its history, noise, legacy-inpaint blend, the next model_in).
// Noise:
//   * RngKind::Philox: initial x for batch row n = Philox(seed, first_sample_index + n, step 0,
//     kTagInitial); the noise of model call i uses (seed, first_sample_index + n, i, kTagStep). So sample i
//     of a batch equals a batch-of-one run with first_sample_index = i.
//   * RngKind::Torch: one TorchGenerator(seed) (or SamplerInputs::generator); x = randn(B, C, H, W) (NCHW,
//     transposed to NHWC) unless SamplerInputs::initial_noise is given; then per model call, in diffusers'
//     order, the generator draws the scheduler makes (SamplerPlan::draws: DDPM t > 0, DDIM eta > 0, Euler every
//     step though unused, Euler a and SDE-DPM every step, LCM all but the last; PNDM, Heun, UniPC none).
// CFG: guidance_scale > 1 with class labels -> the model batch is [null_class x B; labels] (2B rows,
// uncond first, as diffusers' [uncond; cond]; cfg_order CondFirst gives DiTPipeline's [labels; null]);
// otherwise the model runs on B rows (labels or null). Guidance applies to the first C model output channels;
// learned-variance channels are read from the cond rows.
// Text-conditioned models (text_cfg): guidance_scale > 1 runs 2B rows with no labels; the UNet
// callback owns the text embeddings [negative x B; positive x B], as StableDiffusionPipeline.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/sampler_step/sampler_step.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "runtime/sampler_plan.h"
#include "runtime/schedule.h"

namespace diffrt {

enum class RngKind : uint8_t { Philox, Torch };

class TorchGenerator;

struct SampleRequest {
  SamplerKind sampler = SamplerKind::Ddpm;  // the scheduler class to run (see above)
  int steps = 0;          // 0: the pipeline default (default_steps: DDPM 1000, LCM 4, others 50)
  float eta = 0.0f;       // DDIM only, in [0, 1]
  bool use_clipped_model_output = false;  // DDIM only
  uint64_t seed = 0;
  RngKind rng = RngKind::Philox;
  uint32_t first_sample_index = 0;  // Philox: global index of batch row 0
  int batch = 1, height = 0, width = 0, channels = 0;
  std::vector<int32_t> class_labels;  // empty (unconditional) or one per batch row
  float guidance_scale = 1.0f;        // > 1 enables CFG (needs class_labels)
  int32_t null_class = -1;            // label of the unconditional half (e.g. num_classes)
  bool text_cfg = false;              // guidance over text embeddings held by the UNet callback
  CfgOrder cfg_order = CfgOrder::UncondFirst;  // CondFirst: DiTPipeline's [cond; uncond] model batch
  // Image-to-image / inpainting (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline): run
  // timesteps[t_start*order:] with t_start = steps - min(int(steps*strength), steps).
  bool img2img = false;
  double strength = 1.0;
  bool start_from_image = false;       // x = add_noise(image_latents, noise, t_start); else noise * init_noise_sigma
  bool legacy_inpaint_blend = false;   // 4-channel inpainting: blend with the noised image after every step
  int model_in_channels = 0;           // 0 = channels; more: constant extra channels (9-channel inpainting UNet)
};

// Buffers a run may take besides the request (all NHWC fp32, host memory for run_sampler).
struct SamplerInputs {
  const float* initial_noise = nullptr;   // [B, H, W, C]; null: drawn (torch: the generator's next draw)
  const float* image_latents = nullptr;   // [B, H, W, C]: img2img / inpaint start and the legacy blend
  const float* mask = nullptr;            // [B, H, W]: legacy blend mask (1 = repaint)
  const float* model_in_extra = nullptr;  // [Bm, H, W, model_in_channels - C]: constant extra model inputs
  TorchGenerator* generator = nullptr;    // torch RNG: continue this generator (e.g. after a VAE posterior draw)
  // Replaces the RNG for the scheduler's draws (tests): fills draw number `draw` [B, H, W, C] NHWC.
  std::function<void(int draw, float* out)> step_noise;
};

// The number of denoising steps a request asks for (0 = the pipeline default of the class).
int effective_steps(const SampleRequest& r);
// Whether the request runs classifier-free guidance, and the batch the model then runs at.
bool guidance_on(const SampleRequest& r);
inline int model_batch(const SampleRequest& r) { return guidance_on(r) ? 2 * r.batch : r.batch; }
// The model-side labels: [null x B; labels] with class CFG, labels alone, or none.
std::vector<int32_t> model_labels(const SampleRequest& r);
// The fused step's request- and config-derived fields (shapes, guidance, prediction, variance,
// clipping, thresholding, seed); buffers, coefficients and noise are the caller's.
SchedulerStepParams make_step_params(const SchedulerConfig& cfg, const SampleRequest& r, int out_channels_of_model);

// x: [Bm, H, W, Cin] NHWC fp32; timesteps: [Bm]; labels: [Bm] or null; out: [Bm, H, W, Cm].
using UNetFn = std::function<void(const float* x, const float* timesteps, const int32_t* labels,
                                  int bm, float* out)>;
// Called after each completed step with (steps done, total); returning false cancels the run
// (run_sampler throws Error(ErrorCode::Cancelled)). May be empty.
using ProgressFn = std::function<bool(int step, int total)>;

// Checks the request against the config; throws Error(InvalidArgument) naming the field.
void validate_sample_request(const SchedulerConfig& cfg, const SampleRequest& req, int out_channels_of_model);

// Checks the request and builds the plan it runs (the config converted to req.sampler's class).
SamplerPlan plan_for_request(const SchedulerConfig& cfg, const SampleRequest& req, int out_channels_of_model);

// Memory the sampler itself holds beyond the model (host for run_sampler, device for run_sampler_cuda): the
// persistent slots (x and the scheduler history), the initial noise, image latents and mask when the plan reads
// them, the dynamic-thresholding scratch, and -- torch RNG -- the step draws uploaded up front (capped at
// max_torch_noise_bytes, else one streamed draw). For memory preflights.
uint64_t sampler_state_bytes(const SamplerPlan& plan, const SampleRequest& req,
                             uint64_t max_torch_noise_bytes = uint64_t(2) << 30);

// Runs the whole loop; returns the final x [B, H, W, C] NHWC fp32 (not yet mapped to [0, 1]).
// The UNet receives model_in [Bm, H, W, model_in_channels].
std::vector<float> run_sampler(const SchedulerConfig& cfg, const SampleRequest& req,
                               int out_channels_of_model, const UNetFn& unet, const ProgressFn& progress,
                               const SamplerInputs& inputs = {});

// (x / 2 + 0.5).clamp(0, 1), element-wise (diffusers' image post-processing before PIL).
std::vector<float> to_image_01(const std::vector<float>& x);

}  // namespace diffrt
