// The VAE encoder's backend-independent parts and the CPU path (contract in vae_encode.h).
#include "runtime/vae_encode.h"

#include <cmath>
#include <string>

#include "base/error.h"
#include "runtime/plan.h"

namespace diffrt {

void require_vae_encoder(const ModelFile& mf) {
  if (mf.vae_encoder.present()) return;
  if (!mf.vae.present()) fail(ErrorCode::InvalidArgument, "this model file has no VAE (a pixel-space model): nothing to encode with");
  fail(ErrorCode::InvalidArgument,
       std::string("this model file has no VAE encoder") +
           (mf.version < 2 ? " (format version 1, written before the encoder was converted): reconvert the pipeline "
                             "folder with this diffrt"
                           : ": it was converted with --no-vae-encoder or from a VAE checkpoint without encoder "
                             "weights; reconvert the pipeline folder without that flag"));
}

void vae_encoder_latent_hw(const ModelFile& mf, int height, int width, int* h, int* w) {
  require_vae_encoder(mf);
  const Graph& g = mf.vae_encoder.graph;
  const MemoryPlan p = plan_memory(g, 1, height, width);  // shape inference only
  *h = int(p.shapes[size_t(g.output)].h);
  *w = int(p.shapes[size_t(g.output)].w);
}

PosteriorNoise posterior_noise(const PosteriorOptions& o, int n, int h, int w, int c, std::vector<float>* eps) {
  if (!o.sample) return PosteriorNoise::None;
  if (o.rng == RngKind::Philox) return PosteriorNoise::Philox;
  if (!o.generator) fail(ErrorCode::Internal, "posterior: the torch RNG needs the request's generator");
  // randn_tensor(mean.shape, generator): one torch.randn([n, C, h, w]) in float32, NCHW order.
  *eps = torch_randn_nchw_to_nhwc(*o.generator, n, c, h, w);
  return PosteriorNoise::Given;
}

VaePosteriorParams posterior_params(const ModelFile& mf, const PosteriorOptions& o, PosteriorNoise noise,
                                    const void* moments, DType dtype, const float* eps, float* out, int n, int h, int w,
                                    int c) {
  VaePosteriorParams p;
  p.moments = moments;
  p.dtype = dtype;
  p.eps = eps;
  p.out = out;
  p.n = n; p.h = h; p.w = w; p.c = c;
  p.scale = o.scaled ? mf.vae.scaling_factor : 1.0f;
  p.noise = noise;
  p.seed = o.seed;
  p.sample_base = o.first_sample_index;
  p.stream = o.stream;
  return p;
}

void check_moments_finite(const float* moments, size_t count, DType dtype) {
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(moments[i]))
      fail(ErrorCode::Unsupported,
           std::string("VAE encoder produced NaN/Inf in ") + dtype_name(dtype) +
               (dtype == DType::F16 ? ": the Stable Diffusion VAE overflows fp16 (diffusers upcasts it to fp32, "
                                      "force_upcast); convert the model with --dtype bf16 or fp32, or encode with "
                                      "--device cpu"
                                    : ": the image or the VAE weights are out of range"));
}

std::vector<float> encode_moments_cpu(CpuExecutor& ex, const float* images) {
  const Graph& g = ex.graph();
  std::vector<float> moments(ex.plan().shapes[size_t(g.output)].numel());
  GraphInputs in;
  in.sample = images;
  ex.run(in, moments.data());
  check_moments_finite(moments.data(), moments.size(), DType::F32);
  return moments;
}

EncodedLatents posterior_cpu(const ModelFile& mf, const std::vector<float>& moments, int n, int h, int w,
                             const PosteriorOptions& o) {
  require_vae_encoder(mf);
  const int c = mf.vae_encoder.graph.out_channels / 2;
  if (moments.size() != size_t(n) * size_t(h) * size_t(w) * size_t(2 * c))
    fail(ErrorCode::Internal, "posterior: moments do not match [n, h, w, 2C]");
  EncodedLatents r;
  r.n = n; r.h = h; r.w = w; r.c = c;
  r.data.resize(size_t(n) * size_t(h) * size_t(w) * size_t(c));
  std::vector<float> eps;
  const PosteriorNoise noise = posterior_noise(o, n, h, w, c, &eps);
  vae_posterior_ref(posterior_params(mf, o, noise, moments.data(), DType::F32, eps.empty() ? nullptr : eps.data(),
                                     r.data.data(), n, h, w, c));
  return r;
}

}  // namespace diffrt
