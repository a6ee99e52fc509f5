// The backend-independent sampling loop (DDPMPipeline / DDIMPipeline semantics, diffusers 0.27.2),
// with class-conditional classifier-free guidance. The model is a callback, so the same loop
// drives the CPU reference, the CUDA executor (through a host wrapper) and test fakes.
//
// Loop: x = initial noise; for each timestep t: out = unet(model_in, t, labels);
//       x = scheduler_step(out, x) (guidance, noise and the next model_in fused in).
// Noise:
//   * RngKind::Philox: initial x for batch row n = Philox(seed, first_sample_index + n, step 0,
//     kTagInitial); step noise uses (seed, first_sample_index + n, loop step i, kTagStep). So sample i
//     of a batch equals a batch-of-one run with first_sample_index = i.
//   * RngKind::Torch: one TorchGenerator(seed); x = randn(B, C, H, W) (NCHW, transposed to NHWC);
//     then per step, in diffusers' order, randn(B, C, H, W) when the step adds noise
//     (DDPM: t > 0; DDIM: every step when eta > 0).
// CFG: guidance_scale > 1 with class labels -> the model batch is [null_class x B; labels] (2B rows,
// uncond first, as diffusers' [uncond; cond]); otherwise the model runs on B rows (labels or null).
// Text-conditioned models (text_cfg): guidance_scale > 1 runs 2B rows with no labels; the UNet
// callback owns the text embeddings [negative x B; positive x B], as StableDiffusionPipeline.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/scheduler_step/scheduler_step.h"
#include "runtime/schedule.h"

namespace diffrt {

enum class RngKind : uint8_t { Philox, Torch };

struct SampleRequest {
  SamplerKind sampler = SamplerKind::Ddpm;
  int steps = 0;          // 0: the pipeline default (DDPM 1000, DDIM 50)
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
};

// The number of denoising steps a request runs (0 = the pipeline default: DDPM 1000, DDIM 50).
int effective_steps(const SampleRequest& r);
// Whether the request runs classifier-free guidance, and the batch the model then runs at.
bool guidance_on(const SampleRequest& r);
inline int model_batch(const SampleRequest& r) { return guidance_on(r) ? 2 * r.batch : r.batch; }
// The model-side labels: [null x B; labels] with class CFG, labels alone, or none.
std::vector<int32_t> model_labels(const SampleRequest& r);
// The fused step's request- and config-derived fields (shapes, guidance, prediction, variance,
// clipping, thresholding, seed); buffers, coefficients and noise are the caller's.
SchedulerStepParams make_step_params(const SchedulerConfig& cfg, const SampleRequest& r, int out_channels_of_model);

// x: [Bm, H, W, C] NHWC fp32; timesteps: [Bm]; labels: [Bm] or null; out: [Bm, H, W, Cm].
using UNetFn = std::function<void(const float* x, const float* timesteps, const int32_t* labels,
                                  int bm, float* out)>;
// Called after each completed step with (steps done, total); returning false cancels the run
// (run_sampler throws Error(ErrorCode::Cancelled)). May be empty.
using ProgressFn = std::function<bool(int step, int total)>;

// Checks the request against the config; throws Error(InvalidArgument) naming the field.
void validate_sample_request(const SchedulerConfig& cfg, const SampleRequest& req, int out_channels_of_model);

// Runs the whole loop; returns the final x [B, H, W, C] NHWC fp32 (not yet mapped to [0, 1]).
std::vector<float> run_sampler(const SchedulerConfig& cfg, const SampleRequest& req,
                               int out_channels_of_model, const UNetFn& unet, const ProgressFn& progress);

// (x / 2 + 0.5).clamp(0, 1), element-wise (diffusers' image post-processing before PIL).
std::vector<float> to_image_01(const std::vector<float>& x);

}  // namespace diffrt
