// The VAE posterior on the GPU (formula, layouts and noise in vae_posterior.h): one small fused kernel that
// reads the encoder graph's moments in the model dtype straight from its arena, draws the Philox noise in
// registers (or reads the host-drawn torch noise), and writes the fp32 latents -- no moments download, no noise
// buffer, no separate scale pass.
// Mapping: one thread per group of 4 consecutive NCHW elements of one sample (one philox::normal4 call feeds
// all four, the same grouping as the CPU's Philox stream); each element is written to its NHWC place. The
// arithmetic uses explicit round-to-nearest intrinsics (no FMA contraction) and expf, so the result equals the
// CPU reference to an ulp of exp (and bit for bit in the mean mode).
// Test: tests/gpu/vae_posterior_test.cpp (vs vae_posterior_ref on odd shapes, fp32/fp16/bf16 moments, every noise
// mode, guard bytes, NaN/clamp cases). Cost: ~(2C+C) * 4 bytes read+written per pixel; far below a microsecond at
// SD sizes, so it has no benchmark of its own.
#include <algorithm>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/philox.h"
#include "kernels/vae_posterior/vae_posterior.h"

namespace diffrt {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads) vae_posterior_kernel(const T* __restrict__ moments,
                                                                 const float* __restrict__ eps, float* __restrict__ out,
                                                                 int n, long long hw, int c, float scale, int noise,
                                                                 uint64_t seed, uint32_t sample_base, uint32_t stream) {
  const long long per = hw * c;                 // NCHW elements per sample
  const long long groups = (per + 3) / 4;       // Philox groups per sample
  const long long total = (long long)n * groups;
  for (long long g = blockIdx.x * (long long)blockDim.x + threadIdx.x; g < total;
       g += (long long)gridDim.x * blockDim.x) {
    const long long s = g / groups, grp = g % groups;
    float z[4] = {0.f, 0.f, 0.f, 0.f};
    if (noise == int(PosteriorNoise::Philox))
      philox::normal4(seed, sample_base + uint32_t(s), stream, philox::kTagPosterior, uint32_t(grp), z);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const long long e = grp * 4 + k;  // NCHW element within the sample
      if (e >= per) break;
      const long long ch = e / hw, pix = e % hw;
      const long long row = s * hw + pix;  // NHWC pixel row
      const float mean = to_f(moments[row * 2 * c + ch]);
      float v;
      if (noise == int(PosteriorNoise::None)) {
        v = mean;
      } else {
        float lv = to_f(moments[row * 2 * c + c + ch]);
        lv = lv < kLogvarMin ? kLogvarMin : (lv > kLogvarMax ? kLogvarMax : lv);  // NaN passes through
        const float std_dev = expf(__fmul_rn(0.5f, lv));
        const float z_k = noise == int(PosteriorNoise::Given) ? eps[row * c + ch] : z[k];
        v = __fadd_rn(mean, __fmul_rn(std_dev, z_k));
      }
      out[row * c + ch] = __fmul_rn(scale, v);
    }
  }
}

template <class T>
void launch(const VaePosteriorParams& p, cudaStream_t stream) {
  const long long hw = (long long)p.h * p.w;
  const long long total = (long long)p.n * ceil_div(hw * p.c, 4LL);
  const unsigned grid = unsigned(std::max<long long>(1, std::min<long long>(ceil_div(total, (long long)kThreads), 1 << 20)));
  vae_posterior_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(p.moments), p.eps, p.out, p.n, hw, p.c,
                                                          p.scale, int(p.noise), p.seed, p.sample_base, p.stream);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void vae_posterior_cuda(const VaePosteriorParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.n > 0 && p.h > 0 && p.w > 0 && p.c > 0, ErrorCode::InvalidArgument, "vae_posterior_cuda: bad shape");
  DIFFRT_REQUIRE(p.moments && p.out, ErrorCode::InvalidArgument, "vae_posterior_cuda: null moments or out");
  DIFFRT_REQUIRE(p.noise != PosteriorNoise::Given || p.eps, ErrorCode::InvalidArgument, "vae_posterior_cuda: null eps");
  DIFFRT_REQUIRE(uint64_t(p.h) * uint64_t(p.w) * uint64_t(p.c) <= 0xffffffffull, ErrorCode::InvalidArgument,
                 "vae_posterior_cuda: one sample exceeds 2^32 elements");
  switch (p.dtype) {
    case DType::F32: launch<float>(p, stream); break;
    case DType::F16: launch<__half>(p, stream); break;
    case DType::BF16: launch<__nv_bfloat16>(p, stream); break;
  }
}

}  // namespace diffrt
