// The VAE encoder's posterior (diffusers 0.27.2 DiagonalGaussianDistribution) fused with the pipeline's scaling:
//   mean, logvar = moments[..., :C], moments[..., C:]
//   sample: out = scale * (mean + exp(0.5 * clamp(logvar, -30, 20)) * eps)      (latent_dist.sample(generator))
//   mean:   out = scale * mean                                                   (latent_dist.mode())
// `scale` is the VAE's scaling_factor (img2img/inpaint: init_latents = scaling_factor * sample), or 1 for the
// unscaled posterior. The operations run in fp32 in exactly this order (torch's: clamp, 0.5*, exp, std*eps,
// mean+, then *scale), never contracted into FMAs.
// Layouts: moments [N, H, W, 2C] NHWC in `dtype` (the encoder graph's output, in the model dtype on the GPU;
// fp32 for the CPU reference); eps [N, H, W, C] NHWC fp32; out [N, H, W, C] NHWC fp32 (sampling state stays fp32).
// Noise:
//   * None:   the mean (eps unused);
//   * Given:  eps from memory (torch mode: the host draws torch.randn([N, C, H, W]) from the request's generator
//             and transposes it to NHWC);
//   * Philox: eps[n, y, x, c] = Philox(seed, sample_base + n, stream, kTagPosterior) at the NCHW element index
//             c*H*W + y*W + x (kernels/common/philox.h): identical on CPU and GPU, independent of the batch, and
//             distinct from the sampler's streams (tags kTagInitial/kTagStep).
// Test: tests/vae_posterior_test.cpp (CPU reference vs a direct formula and the gaussian_clamp fixture),
// tests/gpu/vae_posterior_test.cpp (CUDA vs the reference, all dtypes, guard bytes).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "base/dtype.h"

namespace diffrt {

enum class PosteriorNoise : uint8_t { None, Given, Philox };

struct VaePosteriorParams {
  const void* moments = nullptr;  // moments: [N, H, W, 2C] in dtype
  DType dtype = DType::F32;
  const float* eps = nullptr;     // eps: [N, H, W, C] fp32 (noise == Given)
  float* out = nullptr;           // out: [N, H, W, C] fp32; must not overlap moments or eps
  int n = 0, h = 0, w = 0, c = 0;
  float scale = 1.0f;
  PosteriorNoise noise = PosteriorNoise::None;
  uint64_t seed = 0;              // Philox
  uint32_t sample_base = 0;       // Philox: global sample index of row 0
  uint32_t stream = 0;            // Philox: the counter's step word (which encode of a request)
};

constexpr float kLogvarMin = -30.0f, kLogvarMax = 20.0f;  // DiagonalGaussianDistribution's clamp

void vae_posterior_ref(const VaePosteriorParams& p);  // dtype must be fp32
void vae_posterior_cuda(const VaePosteriorParams& p, cudaStream_t stream);

}  // namespace diffrt
