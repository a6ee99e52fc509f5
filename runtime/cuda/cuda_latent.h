// StableDiffusionPipeline semantics on the CUDA backend: the text-conditioned denoising loop and the VAE decode
// that follows it. Same contracts and results as sample_latents_cpu / decode_latents_cpu
// (runtime/latent_pipeline.h); the loop itself is run_sampler_cuda (CUDA-graph replay, text context uploaded once).
//
// fp16 and the VAE: the Stable Diffusion VAE decoder overflows fp16 (activations past 65504 in its mid/up blocks
// at real sizes; diffusers sets force_upcast and decodes in fp32). CudaWeights holds every tensor in the model
// dtype, so an F16 model file decodes in fp16 here: decode_latents_cuda checks the output and, if it holds NaN or
// Inf, throws Error(Unsupported) saying so (never a silent inf image). Until the VAE keeps its own dtype (fp32 or
// bf16 weights beside an fp16 UNet: a follow-up), convert with --dtype bf16 or fp32, or decode on the CPU.
#pragma once
#include <vector>

#include "runtime/cuda/cuda_executor.h"
#include "model/model_file.h"
#include "runtime/sampler.h"

namespace diffrt {

// Denoising loop for a text-conditioned UNet on the GPU: returns final latents [B, h, w, C] NHWC fp32.
// `context` is model_context()'s result: [model_batch(req), len, context_dim] fp32.
std::vector<float> sample_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                       const SchedulerConfig& cfg, const SampleRequest& req,
                                       const std::vector<float>& context, int len, const ProgressFn& progress);

// VAE decode on the GPU: latents [n, h, w, C] NHWC fp32 (not yet divided by the scaling factor) -> images
// [n, f*h, f*w, 3] NHWC fp32 in about [-1, 1] (map with to_image_01). Throws Error(Unsupported) when an fp16
// decode overflowed (see above).
std::vector<float> decode_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                       const std::vector<float>& latents, int n, int h, int w);

}  // namespace diffrt
