// Device memory planning for the CUDA backend, computed without any CUDA call (usable on CPU-only machines:
// `how much GPU memory will this model take at this batch and size?`).
//
// The CPU planner (runtime/plan.h) assigns element offsets aligned to 64 elements, which is 256 bytes for
// fp32 but only 128 for 2-byte dtypes. The CUDA executor therefore re-runs the same liveness first-fit in
// BYTES for the model dtype, with 256-byte alignment: same lifetimes (plan.last_use), same node order.
#pragma once
#include <cstdint>
#include <optional>
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

// What one CudaExecutor of graph `g` planned as `plan` allocates, in bytes, with activations in `dtype`: its arena
// (plan_device_arena), its input buffers (sample and encoder_hidden_states in `dtype`, timesteps fp32, class labels
// and token ids int32, each 256-byte aligned) and its GroupNorm workspace. CudaExecutor::device_bytes() reports
// the same sum from its actual buffers (tests/gpu checks the two agree).
struct ExecutorBytes {
  uint64_t arena = 0, inputs = 0, group_norm_workspace = 0;
  uint64_t total() const { return arena + inputs + group_norm_workspace; }
};
ExecutorBytes cuda_executor_bytes(const Graph& g, const MemoryPlan& plan, DType dtype);

// The largest scratch the CUDA contexts (CudaContext: cuDNN and cuBLASLt) allocate for a graph's nodes, beyond their
// configured workspaces: the explicitly padded input of asymmetric convolutions (one batch chunk, conv_batch_chunks)
// and the silu(x) input of linear layers with silu_input. The cuDNN algorithm search writes into each conv's real
// output and needs no scratch of its own.
struct ContextScratch {
  uint64_t conv_pad = 0, silu = 0;
};
ContextScratch cuda_context_scratch(const Graph& g, const MemoryPlan& plan, DType dtype);

// The library workspaces a CudaContext is configured with (upper bounds: cuDNN/cuBLASLt may use less):
// CudnnConv::Options::max_workspace_bytes and CublasLtContext::Options::workspace_bytes defaults.
constexpr uint64_t kConvWorkspaceCap = uint64_t(256) << 20;
constexpr uint64_t kGemmWorkspaceBytes = uint64_t(32) << 20;

// What to report. A request runs in phases, one after the other on one CudaContext: the text encoder (prompts as
// text), the denoising loop, the VAE decode. The context's workspaces and the shared weights live through all
// of them; each phase's executor is freed before the next starts.
struct CudaMemoryQuery {
  int batch = 1;              // images
  int h = 0, w = 0;           // the denoiser's sample size (the latent size of a latent-diffusion model)
  bool cfg = false;           // classifier-free guidance: the denoiser runs 2 x batch rows
  int steps = 1000;           // sizes the sampler's tables
  int context_len = 0;        // encoder_hidden_states tokens of a text-conditioned UNet (required >= 1 there), else 0
  int text_rows = 0;          // rows the text encoder runs on (prompts as text); 0: it does not run
  bool decode = true;         // the VAE decode phase (model files with a VAE)
  // Every graph's activations and every tensor in this dtype ("what would a conversion to X take"); unset: each
  // graph's stored dtype (Graph::dtype) and each tensor's, as the CUDA backend runs the file.
  std::optional<DType> dtype;
  PlanLimits limits;          // the API raises max_arena_bytes to report, rather than refuse, absurd requests
};

// Everything a CUDA sampling session takes, in bytes, per phase. For a latent-diffusion model file, h and w are
// the latent size (the UNet's sample).
struct CudaMemoryReport {
  DType dtype = DType::F32;             // the denoiser's (vae_dtype, text_dtype: the other graphs')
  DType vae_dtype = DType::F32, text_dtype = DType::F32;
  int model_batch = 0;                  // batch the UNet runs at (2x batch with classifier-free guidance)
  int context_len = 0;                  // encoder_hidden_states tokens (text-conditioned UNets), else 0
  uint64_t weight_bytes = 0;            // every tensor of the model file, 256-byte aligned each
  uint64_t arena_bytes = 0;             // activations (plan_device_arena)
  uint64_t naive_activation_bytes = 0;  // what the arena saves against (every value its own block)
  uint64_t input_bytes = 0;             // sample (dtype), timesteps (fp32), labels (int32), context (dtype)
  uint64_t group_norm_workspace_bytes = 0;
  uint64_t conv_workspace_bytes = 0;    // cuDNN workspace cap + explicitly padded input scratch (all graphs)
  uint64_t gemm_workspace_bytes = 0;    // cuBLASLt workspace + silu(x) scratch (all graphs)
  uint64_t sampler_bytes = 0;           // fp32 state x, coefficient/timestep tables, step counter
  uint64_t total_bytes = 0;             // the sampling loop: the sum of the fields above
  // VAE decode of the batch's latents (model files with a VAE, when queried; 0 otherwise): its arena, input and
  // GroupNorm workspace. It runs after the loop's executor is gone, beside the weights and the library workspaces.
  uint64_t vae_arena_bytes = 0;
  uint64_t vae_input_bytes = 0;
  uint64_t vae_group_norm_workspace_bytes = 0;
  uint64_t vae_total_bytes = 0;         // weights + workspaces (conv/gemm, sized for every graph) + the three above
  // The text encoder on text_rows prompts (0 when it does not run): its arena and token ids. It runs before the loop.
  uint64_t text_arena_bytes = 0;
  uint64_t text_input_bytes = 0;
  uint64_t text_total_bytes = 0;        // weights + workspaces + the two above
  uint64_t peak_bytes = 0;              // max(total_bytes, vae_total_bytes, text_total_bytes)
};

// No CUDA call. Throws Error(InvalidArgument) for sizes the graphs cannot take.
CudaMemoryReport cuda_memory_report(const ModelFile& mf, const CudaMemoryQuery& q);

// The same with every graph in `dtype`, no text encoder phase: `batch` images; `cfg` doubles the model batch;
// `steps` sizes the tables; `context_len`: tokens of encoder_hidden_states for a text-conditioned UNet (77 for CLIP;
// required >= 1 there), 0 for other models.
CudaMemoryReport cuda_memory_report(const ModelFile& mf, DType dtype, int batch, int h, int w, bool cfg = false,
                                    int steps = 1000, int context_len = 0, const PlanLimits& limits = {});

}  // namespace diffrt
