// Latent-diffusion helpers on the CUDA backend (contract in cuda_latent.h). Host code only: it checks the sizes
// as the CPU path does (runtime/latent_pipeline.cpp, runtime/vae_encode.cpp) and drives run_sampler_cuda /
// CudaExecutor and the posterior kernel.
// Tested by tests/gpu/sd_test.cpp (vs the CPU path and vs StableDiffusionPipeline fixtures) and
// tests/gpu/vae_encoder_test.cpp (the encoder and posterior vs the CPU path and the diffusers fixtures).
#include "runtime/cuda/cuda_latent.h"

#include <cmath>
#include <string>

#include "base/error.h"
#include "kernels/vae_posterior/vae_posterior.h"
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

namespace {

void check_images(const ModelFile& mf, const std::vector<float>& images, int n, int h, int w) {
  require_vae_encoder(mf);
  const Graph& g = mf.vae_encoder.graph;
  if (n < 1 || h < 1 || w < 1 || images.size() != size_t(n) * size_t(h) * size_t(w) * size_t(g.in_channels))
    fail(ErrorCode::InvalidArgument, "images do not match [n, h, w, " + std::to_string(g.in_channels) + "]");
}

}  // namespace

EncodedLatents encode_moments_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                   const std::vector<float>& images, int n, int h, int w) {
  check_images(mf, images, n, h, w);
  const Graph& g = mf.vae_encoder.graph;
  CudaExecutor ex(mf, weights, ctx, g, PlanInputs{n, h, w, 0});
  const ValueShape& os = ex.plan().shapes[size_t(g.output)];
  EncodedLatents r;
  r.n = n; r.h = int(os.h); r.w = int(os.w); r.c = int(os.c);
  r.data.resize(os.numel());
  GraphInputs in;
  in.sample = images.data();
  ex.run(in, r.data.data());
  check_moments_finite(r.data.data(), r.data.size(), ex.dtype());
  return r;
}

void enqueue_encode_latents_cuda(CudaExecutor& ex, const float* images, const PosteriorOptions& o, float* d_out,
                                 DeviceBuffer& d_eps) {
  const ModelFile& mf = ex.model();
  require_vae_encoder(mf);
  if (&ex.graph() != &mf.vae_encoder.graph) fail(ErrorCode::Internal, "encode: the executor does not run the VAE encoder");
  const ValueShape& os = ex.plan().shapes[size_t(ex.graph().output)];
  const int n = int(os.n), h = int(os.h), w = int(os.w), c = int(os.c) / 2;
  std::vector<float> eps;
  const PosteriorNoise noise = posterior_noise(o, n, h, w, c, &eps);  // torch: drawn before anything runs
  ex.upload_sample(images);
  cudaStream_t s = ex.context().stream();
  if (!eps.empty()) {
    d_eps.reserve(eps.size() * sizeof(float));
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_eps.get(), eps.data(), eps.size() * sizeof(float), cudaMemcpyHostToDevice, s));
    // `eps` is pageable host memory about to go out of scope: the copy must have left it.
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  ex.enqueue();
  vae_posterior_cuda(posterior_params(mf, o, noise, ex.output(), ex.dtype(), eps.empty() ? nullptr : d_eps.as<float>(),
                                      d_out, n, h, w, c),
                     s);
}

EncodedLatents encode_latents_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                   const std::vector<float>& images, int n, int h, int w, const PosteriorOptions& o) {
  check_images(mf, images, n, h, w);
  const Graph& g = mf.vae_encoder.graph;
  CudaExecutor ex(mf, weights, ctx, g, PlanInputs{n, h, w, 0});
  const ValueShape& os = ex.plan().shapes[size_t(g.output)];
  EncodedLatents r;
  r.n = n; r.h = int(os.h); r.w = int(os.w); r.c = int(os.c) / 2;
  r.data.resize(size_t(n) * size_t(r.h) * size_t(r.w) * size_t(r.c));
  DeviceBuffer d_out(r.data.size() * sizeof(float)), d_eps;
  enqueue_encode_latents_cuda(ex, images.data(), o, d_out.as<float>(), d_eps);
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(r.data.data(), d_out.get(), r.data.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                    ctx.stream()));
  // The moments are still in the executor's arena: check them (download synchronises), as the decoder checks its
  // images. Mean mode never reads the logvar half, so the latents are checked too.
  const std::vector<float> moments = ex.download(g.output);
  check_moments_finite(moments.data(), moments.size(), ex.dtype());
  check_moments_finite(r.data.data(), r.data.size(), ex.dtype());
  return r;
}

}  // namespace diffrt
