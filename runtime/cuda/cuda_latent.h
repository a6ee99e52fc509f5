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
#include "runtime/vae_encode.h"

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

// VAE encoder on the GPU (runtime/vae_encode.h): images NHWC [n, H, W, Cin] fp32 in [-1, 1] -> the posterior's
// moments NHWC [n, h, w, 2C] fp32 (checked finite: an fp16 overflow is Error(Unsupported), as for the decoder).
EncodedLatents encode_moments_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                   const std::vector<float>& images, int n, int h, int w);
// The device half of an encode, for pipelines that keep the latents on the GPU: uploads the images to `encoder`
// (an executor of mf.vae_encoder.graph), enqueues the graph and then the fused posterior kernel
// (kernels/vae_posterior) on the moments in the executor's arena, writing latents [n, h, w, C] fp32 to `d_out`
// (device memory). A torch-RNG sample draws its noise from o.generator on the host and uploads it into
// `d_eps_scratch` (grown as needed). Asynchronous on the context's stream after the uploads.
void enqueue_encode_latents_cuda(CudaExecutor& encoder, const float* images, const PosteriorOptions& o, float* d_out,
                                 DeviceBuffer& d_eps_scratch);
// Host convenience: the above, then latents (and the moments, checked finite) downloaded.
EncodedLatents encode_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                   const std::vector<float>& images, int n, int h, int w, const PosteriorOptions& o);

}  // namespace diffrt
