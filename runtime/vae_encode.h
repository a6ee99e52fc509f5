// The VAE encoder half of image-to-image and inpainting (diffusers 0.27.2 AutoencoderKL.encode +
// DiagonalGaussianDistribution + the pipelines' `scaling_factor *`), backend-independent parts and the CPU path:
//
//   images NHWC [n, H, W, Cin] in [-1, 1]  --encoder graph (mf.vae_encoder)-->  moments NHWC [n, h, w, 2C]
//     --posterior (kernels/vae_posterior)-->  latents NHWC [n, h, w, C] = scale * (mean + std * eps) or scale * mean
//
// with h = floor(H / 2^(levels-1)) (each Downsample2D floors), C the latent channels and scale the VAE's
// scaling_factor. The noise eps of a posterior sample comes from the request's generator:
//   * RngKind::Torch: torch.randn([n, C, h, w]) drawn from the caller's TorchGenerator -- the generator the
//     pipeline keeps drawing from afterwards (img2img: the posterior first, then the noise; inpainting: see
//     tests/fixtures/img2img/README.md section 6), exactly diffusers' order and shapes;
//   * RngKind::Philox: row r is Philox(seed, first_sample_index + r, stream, kTagPosterior) at the NCHW element
//     index: independent of the batch, identical on CPU and GPU, and distinct from the sampler's initial/step
//     noise. `stream` tells a request's encodes apart (0: the init image, 1: inpainting's masked image).
// Tests: tests/vae_encoder_test.cpp (CPU vs the diffusers fixtures), tests/gpu/vae_encoder_test.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/vae_posterior/vae_posterior.h"
#include "model/model_file.h"
#include "runtime/cpu_executor.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"

namespace diffrt {

struct PosteriorOptions {
  bool sample = true;               // false: the mean (latent_dist.mode())
  RngKind rng = RngKind::Philox;
  uint64_t seed = 0;                // Philox
  uint32_t first_sample_index = 0;  // Philox: global index of image 0
  uint32_t stream = 0;              // Philox: which encode of the request (0 init image, 1 masked image)
  TorchGenerator* generator = nullptr;  // Torch: the request's generator, advanced by randn([n, C, h, w])
  bool scaled = true;               // multiply by the VAE's scaling_factor (what both pipelines use)
};

// Latents NHWC fp32 with their shape.
struct EncodedLatents {
  std::vector<float> data;  // [n, h, w, c] NHWC
  int n = 0, h = 0, w = 0, c = 0;
};

// Throws Error(InvalidArgument) when the file has no VAE encoder (naming what to do about it).
void require_vae_encoder(const ModelFile& mf);
// The latent size the encoder makes of an H x W image (shape inference; throws for sizes it cannot take).
void vae_encoder_latent_hw(const ModelFile& mf, int height, int width, int* h, int* w);
// The noise mode and host noise of a posterior: Given with eps drawn from o.generator ([n, c, h, w] NCHW,
// returned NHWC) for Torch, Philox (no host noise) or None. Checks o (a Torch sample needs a generator).
PosteriorNoise posterior_noise(const PosteriorOptions& o, int n, int h, int w, int c, std::vector<float>* eps);
// The posterior's params for moments [n, h, w, 2c] (dtype) -> out [n, h, w, c] fp32; eps as posterior_noise made it.
VaePosteriorParams posterior_params(const ModelFile& mf, const PosteriorOptions& o, PosteriorNoise noise,
                                    const void* moments, DType dtype, const float* eps, float* out, int n, int h, int w,
                                    int c);
// Throws Error(Unsupported) naming the dtype when the encoder's moments hold NaN or Inf (an fp16 overflow, or
// out-of-range weights), as the decoder does for its images.
void check_moments_finite(const float* moments, size_t count, DType dtype);

// CPU path on a caller's executor of mf.vae_encoder.graph planned for [n, H, W]: moments NHWC [n, h, w, 2C].
std::vector<float> encode_moments_cpu(CpuExecutor& encoder, const float* images);
// CPU posterior: moments NHWC [n, h, w, 2C] -> latents NHWC [n, h, w, C].
EncodedLatents posterior_cpu(const ModelFile& mf, const std::vector<float>& moments, int n, int h, int w,
                             const PosteriorOptions& o);

}  // namespace diffrt
