// LayerNorm over the last dimension (torch.nn.LayerNorm), one row = one token's C channels.
//
// Formula, per row r of C values (fp32 math, fp32 statistics):
//   m0      = sum_c x / C                                     (pass 1: provisional mean)
//   d       = x - m0;  s1 = sum_c d;  s2 = sum_c d^2          (pass 2, over the values held in registers)
//   mean    = m0 + s1 / C;  var = max(s2 / C - (s1 / C)^2, 0) (corrected two-pass, Chan/Golub/LeVeque:
//                                                              s1 cancels the rounding error of m0, so a
//                                                              mean of 1e4 with unit spread loses nothing
//                                                              beyond fp32 rounding; never E[x^2]-E[x]^2)
//   y       = (x - mean) * rsqrt(var + eps) * gamma[c] + beta[c]
//   adaLN:  y = y * (1 + scale[s, c]) + shift[s, c],  s = r / rows_per_sample    (DiT; shift/scale row views)
// Layout: x, y [rows, C] row-major; gamma, beta [C] (null = 1 / 0). y may alias x: every thread loads its
// whole share of the row before the first reduction and writes only after the last, and rows never share
// threads, so no element is written before every read of its row. Hence x and y are not __restrict__ and
// x is read through the coherent path.
//
// Three paths (layer_norm_cuda_launch in layer_norm.h picks one from the shape and alignment alone):
//   Warp     C <= 1024 (scalar: C <= 256): a warp per row, 4 rows per 128-thread block, the row in registers (VPT vectors per
//            lane), reductions by shuffles only (no shared memory, no barrier). SD's C = 320/640 and CLIP's
//            768/1024 land here: e.g. 2*4096 x 320 fp16 = 8192 warps with 1-2 16-byte loads each.
//   Block    larger rows that fit 512 threads x 8 vectors in registers (SD's C = 1280, up to 16K fp32 /
//            32K fp16 channels): a block per row, the fewest vectors per thread (1, 2, 4) that keep the
//            block <= 256 threads, else 8 (<= 512 threads); block reductions through 256 bytes of shared
//            memory (one float2 per warp).
//   Streamed anything larger: a block of 512 threads per row re-reads the row for each of the 3 passes
//            (the re-reads hit L1/L2); only for shapes no model here uses, kept so every C works.
// Vector width: 16 bytes (4 fp32 / 8 fp16/bf16) when C is a multiple of it and all four pointers are
// 16-byte aligned; otherwise scalar (C = 1, 3, 33, 4097, odd offsets). Traffic is the minimum: one read
// of x, one write of y (+ gamma/beta, L1/L2-resident across rows). Grids are capped and the kernels loop
// over rows, so any rows count (64-bit) works.
//
// Test: tests/gpu/layer_norm_test.cpp (vs layer_norm_ref: SD/CLIP shapes, awkward C and rows, every
// path and vector width, all dtypes, in place, large mean offsets, guard bytes, poisoned outputs).
// Benchmark: bench/kernel_bench.cu, op layer_norm (GB/s = (2 rows C + 2 C) s / t vs the copy ceiling;
// baseline: a naive block-per-row kernel with three scalar passes over global memory).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/layer_norm/layer_norm.h"

namespace diffrt {
namespace {

constexpr int kMaxThreads = 512;
constexpr long long kMaxBlocks = 1 << 20;  // grid cap; kernels loop over rows beyond it

// Sum over the threads of one row: the warp (Warp path, blockDim.x == 32) or the block (blockDim.y == 1).
// The branch is uniform over the block. Block path: contains __syncthreads (via block_sum).
__device__ __forceinline__ float row_sum(float v, float* scratch) {
  if (blockDim.x == 32) return warp_sum(v);
  return block_sum(v, scratch);
}

__device__ __forceinline__ float2 row_sum2(float a, float b, float2* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  if (blockDim.x == 32) return make_float2(a, b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  if (lane == 0) scratch[warp] = make_float2(a, b);
  __syncthreads();
  float2 t = lane < nwarps ? scratch[lane] : make_float2(0.0f, 0.0f);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    t.x += __shfl_xor_sync(0xffffffffu, t.x, o);
    t.y += __shfl_xor_sync(0xffffffffu, t.y, o);
  }
  __syncthreads();  // scratch may be reused by the next reduction
  return t;
}

// adaLN modulation: per-sample row views of shift and scale (null: no modulation).
template <class T>
struct Mod {
  const T* shift;
  const T* scale;
  long long ld, rows_per_sample;
};

// v = v * (1 + scale[s, c0..]) + shift[s, c0..] for the V elements at channel c0 of row r.
template <class T, int V>
__device__ __forceinline__ void modulate(const Mod<T>& m, long long r, int c0, float (&v)[V]) {
  if (!m.shift) return;
  const long long off = (r / m.rows_per_sample) * m.ld + c0;
  float sh[V], sc[V];
  load_vec_ro<T, V>(m.shift + off, sh);
  load_vec_ro<T, V>(m.scale + off, sc);
#pragma unroll
  for (int j = 0; j < V; ++j) v[j] = fmaf(v[j], 1.0f + sc[j], sh[j]);
}

template <class T, int V>
__device__ __forceinline__ void load_affine(const T* __restrict__ gamma, const T* __restrict__ beta, int c0,
                                            float (&g)[V], float (&b)[V]) {
#pragma unroll
  for (int j = 0; j < V; ++j) {
    g[j] = 1.0f;
    b[j] = 0.0f;
  }
  if (gamma) load_vec_ro<T, V>(gamma + c0, g);
  if (beta) load_vec_ro<T, V>(beta + c0, b);
}

// Warp and Block paths. Block (threads_per_row, rows_per_block): threads_per_row == 32 (a warp per row,
// several rows per block) or a multiple of 32 with rows_per_block == 1. Each thread caches up to VPT
// vectors of V elements: vector i = threadIdx.x + k * threads_per_row (coalesced across the row).
template <class T, int V, int VPT>
__global__ void __launch_bounds__(kMaxThreads) ln_cached(const T* x, T* y, const T* __restrict__ gamma,
                                                         const T* __restrict__ beta, long long rows, int c,
                                                         float eps, Mod<T> mod) {
  __shared__ float2 scratch[32];
  const int nvec = c / V;
  const float inv_c = 1.0f / float(c);
  for (long long r = blockIdx.x * (long long)blockDim.y + threadIdx.y; r < rows;
       r += (long long)gridDim.x * blockDim.y) {
    const T* xr = x + r * c;  // x: [rows, C]
    float v[VPT][V];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int i = threadIdx.x + k * blockDim.x;
      if (i < nvec) {
        load_vec<T, V>(xr + i * V, v[k]);
#pragma unroll
        for (int j = 0; j < V; ++j) s += v[k][j];
      }
    }
    const float m0 = row_sum(s, reinterpret_cast<float*>(scratch)) * inv_c;
    float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      if (int(threadIdx.x) + k * int(blockDim.x) < nvec) {
#pragma unroll
        for (int j = 0; j < V; ++j) {
          v[k][j] -= m0;
          s1 += v[k][j];
          s2 = fmaf(v[k][j], v[k][j], s2);
        }
      }
    }
    const float2 t = row_sum2(s1, s2, scratch);
    const float dm = t.x * inv_c;  // mean - m0
    const float rstd = rsqrtf(fmaxf(fmaf(-dm, dm, t.y * inv_c), 0.0f) + eps);
    T* yr = y + r * c;  // y: [rows, C]
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int i = threadIdx.x + k * blockDim.x;
      if (i < nvec) {
        float g[V], b[V];
        load_affine<T, V>(gamma, beta, i * V, g, b);
#pragma unroll
        for (int j = 0; j < V; ++j) v[k][j] = fmaf((v[k][j] - dm) * rstd, g[j], b[j]);
        modulate<T, V>(mod, r, i * V, v[k]);
        store_vec<T, V>(yr + i * V, v[k]);
      }
    }
  }
}

// Streamed path: a block per row, three passes over the row in global memory (1D block).
template <class T, int V>
__global__ void __launch_bounds__(kMaxThreads) ln_streamed(const T* x, T* y, const T* __restrict__ gamma,
                                                           const T* __restrict__ beta, long long rows, int c,
                                                           float eps, Mod<T> mod) {
  __shared__ float2 scratch[32];
  const int nvec = c / V;
  const float inv_c = 1.0f / float(c);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * c;  // x: [rows, C]
    T* yr = y + r * c;        // y: [rows, C]
    float s = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
      float v[V];
      load_vec<T, V>(xr + i * V, v);
#pragma unroll
      for (int j = 0; j < V; ++j) s += v[j];
    }
    const float m0 = block_sum(s, reinterpret_cast<float*>(scratch)) * inv_c;
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
      float v[V];
      load_vec<T, V>(xr + i * V, v);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float d = v[j] - m0;
        s1 += d;
        s2 = fmaf(d, d, s2);
      }
    }
    const float2 t = row_sum2(s1, s2, scratch);
    const float mean = m0 + t.x * inv_c;
    const float dm = t.x * inv_c;
    const float rstd = rsqrtf(fmaxf(fmaf(-dm, dm, t.y * inv_c), 0.0f) + eps);
    // Each element is read and written by the same thread in this pass; the reductions above were
    // barriers, so in place is safe.
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
      float v[V], g[V], b[V];
      load_vec<T, V>(xr + i * V, v);
      load_affine<T, V>(gamma, beta, i * V, g, b);
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = fmaf((v[j] - mean) * rstd, g[j], b[j]);
      modulate<T, V>(mod, r, i * V, v);
      store_vec<T, V>(yr + i * V, v);
    }
  }
}

template <class T, int V>
void ln_launch_vec(const LayerNormParams& p, const LayerNormLaunch& l, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const Mod<T> mod{static_cast<const T*>(p.shift), static_cast<const T*>(p.scale), p.mod_ld,
                   p.rows_per_sample > 0 ? p.rows_per_sample : 1};
  const unsigned grid = unsigned(std::min<long long>(ceil_div(p.rows, l.rows_per_block), kMaxBlocks));
  const dim3 block(unsigned(l.threads_per_row), unsigned(l.rows_per_block));
  if (l.path == LayerNormPath::Streamed) {
    ln_streamed<T, V><<<grid, block, 0, stream>>>(x, y, gamma, beta, p.rows, p.c, p.eps, mod);
  } else {
    switch (l.vecs_per_thread) {
      case 1: ln_cached<T, V, 1><<<grid, block, 0, stream>>>(x, y, gamma, beta, p.rows, p.c, p.eps, mod); break;
      case 2: ln_cached<T, V, 2><<<grid, block, 0, stream>>>(x, y, gamma, beta, p.rows, p.c, p.eps, mod); break;
      case 4: ln_cached<T, V, 4><<<grid, block, 0, stream>>>(x, y, gamma, beta, p.rows, p.c, p.eps, mod); break;
      default: ln_cached<T, V, 8><<<grid, block, 0, stream>>>(x, y, gamma, beta, p.rows, p.c, p.eps, mod); break;
    }
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class T>
void ln_launch(const LayerNormParams& p, cudaStream_t stream) {
  const LayerNormLaunch l = layer_norm_cuda_launch(p);
  if (l.vec == kVecElems<T>) ln_launch_vec<T, kVecElems<T>>(p, l, stream);
  else ln_launch_vec<T, 1>(p, l, stream);
}

// True when [a, a + an) and [b, b + bn) share a byte.
bool overlaps(const void* a, size_t an, const void* b, size_t bn) {
  if (!a || !b || an == 0 || bn == 0) return false;
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + bn && pb < pa + an;
}

}  // namespace

void layer_norm_cuda(const LayerNormParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "layer_norm_cuda: bad dtype");
  DIFFRT_REQUIRE(p.rows >= 0 && p.c > 0, ErrorCode::InvalidArgument,
                 "layer_norm_cuda: bad shape rows=" + std::to_string(p.rows) + " c=" + std::to_string(p.c));
  DIFFRT_REQUIRE(p.eps >= 0.0f && std::isfinite(p.eps), ErrorCode::InvalidArgument,
                 "layer_norm_cuda: eps must be finite and >= 0");
  const size_t es = dtype_size(p.dtype);
  uint64_t bytes = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.rows), uint64_t(p.c) * es, &bytes), ErrorCode::InvalidArgument,
                 "layer_norm_cuda: rows * c overflows");
  if (p.rows == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "layer_norm_cuda: null x or y");
  DIFFRT_REQUIRE(p.x == p.y || !overlaps(p.x, bytes, p.y, bytes), ErrorCode::InvalidArgument,
                 "layer_norm_cuda: y must be x or not overlap it");
  const size_t cb = size_t(p.c) * es;
  DIFFRT_REQUIRE(!overlaps(p.gamma, cb, p.y, bytes) && !overlaps(p.beta, cb, p.y, bytes),
                 ErrorCode::InvalidArgument, "layer_norm_cuda: gamma/beta overlap y");
  DIFFRT_REQUIRE((p.shift == nullptr) == (p.scale == nullptr), ErrorCode::InvalidArgument,
                 "layer_norm_cuda: shift and scale come together");
  if (p.shift) {
    DIFFRT_REQUIRE(p.mod_ld >= p.c && p.rows_per_sample >= 1 && p.rows % p.rows_per_sample == 0,
                   ErrorCode::InvalidArgument,
                   "layer_norm_cuda: modulation needs mod_ld >= C and rows a multiple of rows_per_sample");
    const size_t mb = size_t((p.rows / p.rows_per_sample - 1) * p.mod_ld + p.c) * es;
    DIFFRT_REQUIRE(!overlaps(p.shift, mb, p.y, bytes) && !overlaps(p.scale, mb, p.y, bytes),
                   ErrorCode::InvalidArgument, "layer_norm_cuda: shift/scale overlap y");
  }
  switch (p.dtype) {
    case DType::F32: ln_launch<float>(p, stream); break;
    case DType::F16: ln_launch<__half>(p, stream); break;
    case DType::BF16: ln_launch<__nv_bfloat16>(p, stream); break;
  }
}

}  // namespace diffrt
