// CPU reference of the VAE posterior (contract in vae_posterior.h): fp32, the operation order of torch's
// DiagonalGaussianDistribution, Philox noise from kernels/common/philox.h (the same bits as the CUDA kernel).
// Tested by tests/vae_posterior_test.cpp.
#include <cmath>
#include <string>

#include "base/error.h"
#include "kernels/common/philox.h"
#include "kernels/vae_posterior/vae_posterior.h"

// No FMA contraction: mean + std * eps is two roundings, as torch's eager ops.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace diffrt {

void vae_posterior_ref(const VaePosteriorParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("vae_posterior_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n > 0 && p.h > 0 && p.w > 0 && p.c > 0, ErrorCode::Internal, "vae_posterior_ref: bad shape");
  DIFFRT_REQUIRE(p.moments && p.out, ErrorCode::Internal, "vae_posterior_ref: null moments or out");
  DIFFRT_REQUIRE(p.noise != PosteriorNoise::Given || p.eps, ErrorCode::Internal, "vae_posterior_ref: null eps");
  DIFFRT_REQUIRE(uint64_t(p.h) * uint64_t(p.w) * uint64_t(p.c) <= 0xffffffffull, ErrorCode::Internal,
                 "vae_posterior_ref: one sample exceeds 2^32 elements");
  const float* m = static_cast<const float*>(p.moments);  // m: [N, H, W, 2C]
  const int C = p.c;
  const long long hw = (long long)p.h * p.w;
#pragma omp parallel for schedule(static)
  for (long long r = 0; r < (long long)p.n * hw; ++r) {  // r: pixel row (n, y, x)
    const long long n = r / hw, pix = r % hw;
    const float* mr = m + r * 2 * C;
    float* o = p.out + r * C;  // out: [N, H, W, C]
    for (int c = 0; c < C; ++c) {
      const float mean = mr[c];
      if (p.noise == PosteriorNoise::None) {
        o[c] = p.scale * mean;
        continue;
      }
      float lv = mr[C + c];
      lv = lv < kLogvarMin ? kLogvarMin : (lv > kLogvarMax ? kLogvarMax : lv);  // NaN passes through
      const float std_dev = std::exp(0.5f * lv);
      const float eps = p.noise == PosteriorNoise::Given
                            ? p.eps[r * C + c]
                            : philox::normal_at(p.seed, p.sample_base + uint32_t(n), p.stream, philox::kTagPosterior,
                                                uint32_t(c * hw + pix));
      const float x = mean + std_dev * eps;
      o[c] = p.scale * x;
    }
  }
}

}  // namespace diffrt
