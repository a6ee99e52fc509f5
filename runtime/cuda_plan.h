// Device memory planning for the CUDA backend, computed without any CUDA call (usable on CPU-only machines:
// `how much GPU memory will this model take at this batch and size?`).
//
// The CPU planner (runtime/plan.h) assigns element offsets aligned to 64 elements, which is 256 bytes for
// fp32 but only 128 for 2-byte dtypes. The CUDA executor therefore re-runs the same liveness first-fit in
// BYTES for the model dtype, with 256-byte alignment: same lifetimes (plan.last_use), same node order.
#pragma once
#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "model/model_file.h"
#include "runtime/plan.h"

namespace diffrt {

constexpr uint64_t kDeviceAlignBytes = 256;

struct DeviceArenaPlan {
  std::vector<int64_t> byte_offset;  // per value; -1 for graph inputs (they live outside the arena)
  uint64_t bytes = 0;                // arena size
};

// Byte offsets for every value of `plan` stored in `dtype`.
DeviceArenaPlan plan_device_arena(const Graph& g, const MemoryPlan& plan, DType dtype);

// Largest group_norm_workspace_bytes over the GroupNorm nodes of the plan.
uint64_t group_norm_workspace_for(const Graph& g, const MemoryPlan& plan);

// Everything a CUDA sampling session at (batch, h, w) takes, in bytes. Library workspaces are the upper
// bounds the contexts are configured with (cuDNN may use less). For a latent-diffusion model file, h and w are
// the latent size (the UNet's sample), and the VAE decode that follows the loop is reported as its own phase.
struct CudaMemoryReport {
  DType dtype = DType::F32;
  int model_batch = 0;                  // batch the UNet runs at (2x batch with classifier-free guidance)
  int context_len = 0;                  // encoder_hidden_states tokens (text-conditioned UNets), else 0
  uint64_t weight_bytes = 0;            // every tensor of the model file in `dtype`, 256-byte aligned each
  uint64_t arena_bytes = 0;             // activations (plan_device_arena)
  uint64_t naive_activation_bytes = 0;  // what the arena saves against (every value its own block)
  uint64_t input_bytes = 0;             // sample (dtype), timesteps (fp32), labels (int32), context (dtype)
  uint64_t group_norm_workspace_bytes = 0;
  uint64_t conv_workspace_bytes = 0;    // cuDNN workspace cap + explicitly padded input scratch (upper bound)
  uint64_t gemm_workspace_bytes = 0;    // cuBLASLt workspace + silu(x) scratch
  uint64_t sampler_bytes = 0;           // fp32 state x, coefficient/timestep tables, step counter
  uint64_t total_bytes = 0;             // the sampling loop: the sum of the fields above
  // VAE decode of the batch's latents (model files with a VAE; 0 otherwise): its arena, input and GroupNorm
  // workspace. It runs after the loop's executor is gone, beside the weights and the library workspaces.
  uint64_t vae_arena_bytes = 0;
  uint64_t vae_input_bytes = 0;
  uint64_t vae_group_norm_workspace_bytes = 0;
  uint64_t vae_total_bytes = 0;         // weights + workspaces (conv/gemm, sized for both graphs) + the three above
  uint64_t peak_bytes = 0;              // max(total_bytes, vae_total_bytes)
};

// No CUDA call. `batch` is the number of images; `cfg` doubles the model batch. `steps` sizes the tables.
// `context_len`: tokens of encoder_hidden_states for a text-conditioned UNet (77 for CLIP; required >= 1 there),
// 0 for other models. `limits` bound the plans (the API raises max_arena_bytes to report, rather than refuse, the
// bytes an absurd request needs).
CudaMemoryReport cuda_memory_report(const ModelFile& mf, DType dtype, int batch, int h, int w, bool cfg = false,
                                    int steps = 1000, int context_len = 0, const PlanLimits& limits = {});

}  // namespace diffrt
