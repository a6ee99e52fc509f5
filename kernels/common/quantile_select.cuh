// Device helpers of dynamic thresholding, shared by the scheduler_step and sampler_step kernels: the
// reference's std::min/std::max, an exact block-wide k-th smallest by radix select, and the per-sample scale
// torch.quantile(|x0|, ratio).clamp(1, sample_max_value) gives.
//
// Exactness: non-negative floats order like their bits, so the k-th smallest |x0| is found on the bits by a
// 4-pass 8-bit radix select (no sorting, no rounding). torch 1.13's quantile takes rank = q * (n - 1) in
// float32 and lerps between the values at the two neighbouring ranks with an FMA (torch.lerp); the lerp below
// uses the _rn intrinsics and __fmaf_rn, so it is bit-identical to the CPU references (std::fma).
//
// Tests: tests/gpu/scheduler_step_test.cpp and tests/gpu/sampler_step_test.cpp (thresholding cases).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/philox.h"

namespace diffrt {

// std::max / std::min exactly (first argument returned on ties and NaN comparisons).
__device__ __forceinline__ float ref_max(float a, float b) { return (a < b) ? b : a; }
__device__ __forceinline__ float ref_min(float a, float b) { return (b < a) ? b : a; }

// k-th smallest (0-based) of n non-negative floats, as bits; every thread of the block gets it. hist: 256
// shared counters, bcast: 2 shared words.
__device__ inline uint32_t radix_select(const uint32_t* v, int64_t n, int64_t kth, unsigned* hist, unsigned* bcast) {
  uint32_t prefix = 0, mask = 0;
  int64_t rem = kth;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
      const uint32_t u = v[e];
      if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t cum = 0;
      unsigned sel = 255;
      for (unsigned d = 0; d < 256; ++d) {
        if (cum + int64_t(hist[d]) > rem) { sel = d; break; }
        cum += hist[d];
      }
      bcast[0] = sel;
      bcast[1] = unsigned(rem - cum);
    }
    __syncthreads();
    prefix |= uint32_t(bcast[0]) << shift;
    mask |= 255u << shift;
    rem = bcast[1];
    __syncthreads();
  }
  return prefix;
}

// The thresholding scale of one sample, computed by the whole block (every thread gets it): the value of the
// n non-negative floats `v` at float rank `rank`, lerped between ranks `below` and `above` (each clamped to
// [0, n - 1]) as torch.lerp does, then clamped to [1, smax].
__device__ inline float quantile_scale(const uint32_t* v, int64_t n, float rank, int64_t below, int64_t above,
                                       float smax, unsigned* hist, unsigned* bcast) {
  below = min(max(below, int64_t(0)), n - 1);
  above = min(max(above, int64_t(0)), n - 1);
  const float lo = __uint_as_float(radix_select(v, n, below, hist, bcast));
  const float hi = above == below ? lo : __uint_as_float(radix_select(v, n, above, hist, bcast));
  const float w = philox::f_sub(rank, float(below));
  const float d = philox::f_sub(hi, lo);
  const float s = fabsf(w) < 0.5f ? __fmaf_rn(w, d, lo) : __fmaf_rn(-d, philox::f_sub(1.0f, w), hi);  // torch.lerp
  return ref_min(ref_max(s, 1.0f), smax);
}

}  // namespace diffrt
