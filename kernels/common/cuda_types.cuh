// Device helpers shared by the kernels: storage <-> fp32 conversion, 128-bit vector load/store of
// storage elements, warp and block reductions, ceil_div.
//
// Storage types are float, __half and __nv_bfloat16; all math is fp32. A "vector" is kVecElems<T>
// consecutive elements = 16 bytes (4 floats or 8 halves); the caller guarantees 16-byte alignment when
// it uses load_vec/store_vec with the full width, and picks a narrower N otherwise (N must divide the
// full width: the access is then N * sizeof(T) bytes wide and must be aligned to that).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace diffrt {

template <class T>
struct StorageTraits;
template <>
struct StorageTraits<float> {
  static __device__ __forceinline__ float to_f(float v) { return v; }
  static __device__ __forceinline__ float from_f(float v) { return v; }
};
template <>
struct StorageTraits<__half> {
  static __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_f(float v) { return __float2half_rn(v); }
};
template <>
struct StorageTraits<__nv_bfloat16> {
  static __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
};

template <class T>
__device__ __forceinline__ float to_f(T v) { return StorageTraits<T>::to_f(v); }
template <class T>
__device__ __forceinline__ T from_f(float v) { return StorageTraits<T>::from_f(v); }

// Elements of T in one 16-byte vector.
template <class T>
constexpr int kVecElems = int(16 / sizeof(T));

// Raw word type of an N-element access of T (N * sizeof(T) bytes: 2, 4, 8 or 16).
template <int Bytes>
struct RawWord;
template <> struct RawWord<2> { using type = uint16_t; };
template <> struct RawWord<4> { using type = uint32_t; };
template <> struct RawWord<8> { using type = uint2; };
template <> struct RawWord<16> { using type = uint4; };

// Loads N consecutive elements of T at p (aligned to N*sizeof(T)) and converts them to fp32.
template <class T, int N>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[N]) {
  static_assert(N * sizeof(T) <= 16, "vector wider than 16 bytes");
  if constexpr (N * sizeof(T) >= 2) {
    using W = typename RawWord<int(N * sizeof(T))>::type;
    union { W w; T e[N]; } u;
    u.w = *reinterpret_cast<const W*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(u.e[i]);
  }
}
// Same, through the read-only/non-coherent path (data not written by this kernel).
template <class T, int N>
__device__ __forceinline__ void load_vec_ro(const T* p, float (&out)[N]) {
  using W = typename RawWord<int(N * sizeof(T))>::type;
  union { W w; T e[N]; } u;
  u.w = __ldg(reinterpret_cast<const W*>(p));
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_f(u.e[i]);
}
// Converts N fp32 values to T (round to nearest even) and stores them at p (aligned to N*sizeof(T)).
template <class T, int N>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[N]) {
  using W = typename RawWord<int(N * sizeof(T))>::type;
  union { W w; T e[N]; } u;
#pragma unroll
  for (int i = 0; i < N; ++i) u.e[i] = from_f<T>(v[i]);
  *reinterpret_cast<W*>(p) = u.w;
}

__host__ __device__ __forceinline__ constexpr long long ceil_div(long long a, long long b) {
  return (a + b - 1) / b;
}

// True when every pointer is aligned to `bytes` (a power of two).
__host__ __forceinline__ bool aligned_to(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

// ---- reductions ------------------------------------------------------------------------------
// Full-warp reductions: all 32 lanes of the warp must exist and take part (full mask). Every lane gets the
// result.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x * y * z threads, any count from 1 to 1024). `scratch` is 32 floats
// of shared memory. Every thread gets the same total (bit for bit). Contains __syncthreads(): call it from
// all threads, and do not reuse `scratch` before another barrier.
// Warps: a __shfl_*_sync whose mask names a lane that does not exist (the tail of a partial last warp) is
// undefined behaviour, so full-mask shuffles are used only when the thread count is a multiple of 32 (the
// case every launcher here uses: the branch is uniform over the block). Otherwise the last warp reduces
// under the mask of its existing lanes with bounds-checked shuffle-downs, and the per-warp partials are
// summed from shared memory in a fixed order.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int nthreads = blockDim.x * blockDim.y * blockDim.z;
  const int lane = tid & 31, warp = tid >> 5, nwarps = (nthreads + 31) >> 5;
  if ((nthreads & 31) == 0) {
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
  }
  // Partial last warp: lanes [0, active) of this warp exist.
  const int active = min(32, nthreads - warp * 32);
  const unsigned mask = active == 32 ? 0xffffffffu : ((1u << active) - 1u);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_down_sync(mask, v, o);
    if (lane + o < active) v += other;
  }
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
  for (int i = 0; i < nwarps; ++i) t += scratch[i];
  __syncthreads();
  return t;
}

// Mean/variance partial (count, mean, M2 = sum of squared deviations) and Chan et al.'s merge: exact
// in exact arithmetic and free of the E[x^2] - E[x]^2 cancellation.
struct MeanM2 {
  float n, mean, m2;
};
__device__ __forceinline__ MeanM2 merge_stats(MeanM2 a, MeanM2 b) {
  float n = a.n + b.n;
  if (n == 0.0f) return a;
  float d = b.mean - a.mean;
  float f = b.n / n;
  return MeanM2{n, fmaf(d, f, a.mean), a.m2 + b.m2 + d * d * a.n * f};
}
__device__ __forceinline__ MeanM2 shfl_xor_stats(MeanM2 s, int o) {
  return MeanM2{__shfl_xor_sync(0xffffffffu, s.n, o), __shfl_xor_sync(0xffffffffu, s.mean, o),
                __shfl_xor_sync(0xffffffffu, s.m2, o)};
}
__device__ __forceinline__ MeanM2 warp_merge_stats(MeanM2 s) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) s = merge_stats(s, shfl_xor_stats(s, o));
  return s;
}

}  // namespace diffrt
