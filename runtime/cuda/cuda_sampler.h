// The whole sampling loop on the GPU (same contract and result as run_sampler() in runtime/sampler.h, for every
// scheduler class: returns the final x [B, H, W, C] NHWC fp32 on the host, not yet mapped to [0, 1]).
//
//  * Stages (runtime/cuda/cuda_sampler.cpp): validate + plan (plan_for_request: the same host plan the CPU loop
//    runs), device tables (the plan's step rows, the model timestep of every call, the device call counter),
//    sampler state (the persistent slots: x and the scheduler history) and constant inputs (image latents, mask,
//    the extra model-input channels of a 9-channel inpainting UNet), noise, time embeddings of every call
//    precomputed in one launch (timestep_embedding_steps_cuda) when the graph has one time embedding node fed by
//    the timestep input, capture, the loop, readback. The text context of a text-conditioned UNet is uploaded
//    once into the executor's encoder_hidden_states buffer in the model dtype.
//  * Noise: RngKind::Philox draws on the device with kernels/common/philox.h (initial x = (seed, first_sample_index
//    + n, 0, kTagInitial); the noise of model call i = (seed, first_sample_index + n, i, kTagStep)) -- bit-identical
//    to the CPU loop. RngKind::Torch draws on the host (torch's CPU generator is sequential, as in diffusers) in
//    diffusers' order -- including the draws a scheduler makes and never reads (Euler) -- and uploads the draws the
//    steps read up front when they fit in max_torch_noise_bytes; otherwise it streams one call at a time through
//    two pinned staging buffers (the only mode with a host wait inside the loop, documented in the stats).
//  * One model call = [timesteps <- table[counter]] + UNet + generic fused step (row = table[counter]) +
//    (++counter), with the counter in device memory: captured ONCE as a CUDA graph and replayed for every call
//    (Heun's second calls and PNDM's extra calls included), no host synchronisation inside the loop. The UNet runs
//    once eagerly before capture (cuDNN/cuBLASLt plans, buffer growth) and every kernel the call launches is
//    loaded beforehand (cudaFuncGetAttributes), so CUDA_MODULE_LOADING=LAZY cannot break the capture. If capture
//    or instantiation fails anyway, the same call is launched eagerly and the stats say why
//    (graph_capture_failed, graph_fallback).
//  * Progress: an event is recorded after each call only when a callback is given; the host polls those events
//    (cudaEventQuery), reports steps as users count them (SamplerPlan::progress_after: Heun's two calls make one
//    step), and blocks only to stay at most max_steps_in_flight calls ahead of the GPU. Returning false cancels:
//    the stream is drained and Error(Cancelled) is thrown.
//  * NVTX (runtime/cuda/nvtx.h): ranges "sampler setup", "capture step graph" and "call i/N" (around each
//    call's launch), plus the executor's per-node ranges, in the "diffrt" domain.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cuda/cuda_executor.h"
#include "runtime/sampler.h"

namespace diffrt {

// Benchmark instrumentation (diffrt bench). When CudaSamplerOptions::timing is set, a timing event is recorded on
// the stream before the first model call and after every call; after the loop, step_ms[i] is the GPU time from the
// end of call i-1 to the end of call i (one entry per model call: Heun has 2N-1, PNDM N+1) (graph replay or eager launches: what the loop costs per step when the host
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
  int steps = 0;                    // steps as users count them
  int model_calls = 0;              // UNet calls (= graph replays)
  bool graph_used = false;
  bool graph_capture_failed = false;  // capture or instantiation failed (not merely disabled): see graph_fallback
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
                                    const CudaTextContext& text = {}, const SamplerInputs& inputs = {});

}  // namespace diffrt
