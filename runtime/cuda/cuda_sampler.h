// The whole sampling loop on the GPU (same contract and result as run_sampler() in runtime/sampler.h: returns
// the final x [B, H, W, C] NHWC fp32 on the host, not yet mapped to [0, 1]).
//
//  * Setup, once: request validation, the text context of a text-conditioned UNet (CudaTextContext) uploaded
//    into the executor's encoder_hidden_states buffer in the model dtype (it does not change while sampling, so
//    the captured step reads it from the same device address on every replay), the schedule (timesteps + per-step coefficients, host float32 exactly as
//    the CPU loop) uploaded as device tables, the executor (one arena), the initial noise, the time embeddings
//    of every step precomputed in one launch (timestep_embedding_steps_cuda) when the graph has one time
//    embedding node fed by the graph's timestep input.
//  * Noise: RngKind::Philox draws on the device with kernels/common/philox.h (tags, sample and step indexing as
//    runtime/sampler.cpp: initial x = (seed, first_sample_index + n, step 0, kTagInitial); step i noise =
//    (seed, first_sample_index + n, i, kTagStep)) -- bit-identical to the CPU loop. RngKind::Torch draws on
//    the host (torch's CPU generator is sequential, as in diffusers) in diffusers' order and uploads all step
//    noise up front when it fits in max_torch_noise_bytes; otherwise it streams one step at a time through two
//    pinned staging buffers (the only mode with a host wait inside the loop, documented in the stats).
//  * One step = [timesteps <- table[counter]] + UNet + fused scheduler step + (++counter), with the counter in
//    device memory: captured ONCE as a CUDA graph and replayed `steps` times, no host synchronisation inside the
//    loop. Every shape runs once eagerly before capture (cuDNN/cuBLASLt plans, buffer growth). If capture or
//    instantiation fails, the same step is launched eagerly (stats say why).
//  * Progress: an event is recorded after each step only when a callback is given; the host polls those events
//    (cudaEventQuery), reports each finished step in order, and blocks only to stay at most
//    max_steps_in_flight steps ahead of the GPU (enough to keep it busy, bounded cancellation latency).
//    Returning false cancels: the stream is drained and Error(Cancelled) is thrown.
//  * NVTX (runtime/cuda/nvtx.h): ranges "sampler setup", "capture step graph" and "step i/N" (around each
//    step's launch), plus the executor's per-node ranges, in the "diffrt" domain.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_executor.h"
#include "runtime/sampler.h"

namespace diffrt {

// Benchmark instrumentation (diffrt bench). When CudaSamplerOptions::timing is set, a timing event is recorded on
// the stream before the first step and after every step; after the loop, step_ms[i] is the GPU time from the end
// of step i-1 to the end of step i (graph replay or eager launches: what the loop costs per step when the host
// stays ahead), loop_ms the whole loop, and device_used_bytes the device's used memory (cudaMemGetInfo: total -
// free) while every buffer of the run is still allocated. Costs one event record per step.
struct CudaStepTiming {
  std::vector<float> step_ms;
  float loop_ms = 0;
  uint64_t device_used_bytes = 0;
};

struct CudaSamplerOptions {
  bool use_cuda_graph = true;
  bool precompute_time_embeddings = true;
  bool debug = false;                              // eager, sync + check after every node (no graph)
  int max_steps_in_flight = 4;                     // with a progress callback
  uint64_t max_torch_noise_bytes = uint64_t(2) << 30;
  uint64_t max_time_embedding_bytes = uint64_t(1) << 30;
  CudaStepTiming* timing = nullptr;                // filled when set (see CudaStepTiming)
};

struct CudaSamplerStats {
  int steps = 0;
  bool graph_used = false;
  std::string graph_fallback;       // why the eager path ran ("" when the graph ran)
  bool time_embeddings_precomputed = false;
  bool torch_noise_streamed = false;  // torch noise went through the per-step host path
  uint64_t arena_bytes = 0;
};

// The text context of a text-conditioned UNet (mf.graph.context >= 0): encoder_hidden_states of every model-batch
// row, host fp32 [model_batch(req), len, context_dim] -- [negative x B; positive x B] with guidance (req.text_cfg,
// StableDiffusionPipeline's order), else [positive x B]: exactly model_context()'s result (latent_pipeline.h).
// Read once, before the loop. Empty ({nullptr, 0}) for models without a text context.
struct CudaTextContext {
  const float* data = nullptr;
  int len = 0;  // tokens per row (77 for CLIP); >= 1 with data
};

std::vector<float> run_sampler_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                    const SchedulerConfig& cfg, const SampleRequest& req, const ProgressFn& progress,
                                    const CudaSamplerOptions& opt = {}, CudaSamplerStats* stats = nullptr,
                                    const CudaTextContext& text = {});

}  // namespace diffrt
