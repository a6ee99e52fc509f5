// Latent-diffusion helpers on the CUDA backend (contract in cuda_latent.h). Host code only: it checks the sizes
// as the CPU path does (runtime/latent_pipeline.cpp) and drives run_sampler_cuda / CudaExecutor.
// Tested by tests/gpu/sd_test.cpp (vs the CPU path and vs StableDiffusionPipeline fixtures).
#include "runtime/cuda/cuda_latent.h"

#include <cmath>
#include <string>

#include "base/error.h"
#include "runtime/cuda/cuda_sampler.h"

namespace diffrt {

std::vector<float> sample_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                       const SchedulerConfig& cfg, const SampleRequest& req,
                                       const std::vector<float>& context, int len, const ProgressFn& progress) {
  if (mf.graph.context < 0) fail(ErrorCode::InvalidArgument, "this model is not text-conditioned");
  const int bm = model_batch(req);
  if (len < 1 || context.size() != size_t(bm) * size_t(len) * size_t(mf.graph.context_dim))
    fail(ErrorCode::InvalidArgument, "text context does not match the model batch: expected [" + std::to_string(bm) +
                                         ", " + std::to_string(len) + ", " + std::to_string(mf.graph.context_dim) +
                                         "] (" + std::to_string(context.size()) + " values given)");
  CudaTextContext text;
  text.data = context.data();
  text.len = len;
  return run_sampler_cuda(mf, weights, ctx, cfg, req, progress, {}, nullptr, text);
}

std::vector<float> decode_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                       const std::vector<float>& latents, int n, int h, int w) {
  if (!mf.vae.present()) fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder");
  const Graph& g = mf.vae.graph;
  if (n < 1 || h < 1 || w < 1 ||
      latents.size() != size_t(n) * size_t(h) * size_t(w) * size_t(g.in_channels))
    fail(ErrorCode::InvalidArgument, "latents do not match [n, h, w, " + std::to_string(g.in_channels) + "]");
  CudaExecutor ex(mf, weights, ctx, g, PlanInputs{n, h, w, 0});
  std::vector<float> out(ex.plan().shapes[size_t(g.output)].numel());
  GraphInputs in;
  in.sample = latents.data();
  ex.run(in, out.data());
  // An fp16 VAE overflows at real SD sizes (diffusers' force_upcast); report it instead of returning inf/NaN
  // pixels. (An fp32 or bf16 decode that goes non-finite is reported the same way.)
  for (float v : out)
    if (!std::isfinite(v))
      fail(ErrorCode::Unsupported,
           std::string("VAE decode produced NaN/Inf in ") + dtype_name(ex.dtype()) +
               (ex.dtype() == DType::F16
                    ? ": the Stable Diffusion VAE overflows fp16 (diffusers upcasts it to fp32, force_upcast); "
                      "convert the model with --dtype bf16 or fp32, or decode with --device cpu"
                    : ": the latents or the VAE weights are out of range"));
  return out;
}

}  // namespace diffrt
