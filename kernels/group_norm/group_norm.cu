// GroupNorm over NHWC activations, with the UNet's fusions.
//
// Formula (per sample n, group g of cpg = C/G consecutive channels, over all HW rows):
//   x'      = x + emb[n, c]                       (EmbMode::AddBeforeNorm; x' = x otherwise)
//   mu, var = mean and biased variance of x' over (HW rows) x (cpg channels), fp32
//   y       = (x' - mu) * rsqrt(var + eps) * gamma[c] + beta[c]
//   y       = y * (1 + emb[n, c]) + emb[n, C + c]  (EmbMode::ScaleShift)
//   y       = silu(y)                              (silu)
// Layout: x, y [N, HW, C] (channels innermost); gamma, beta [C]; emb [N, C] or [N, 2C]. y may alias x.
//
// Two kernels, because a group of a large image (64x64x320 at N=8: 2.6 MB per sample) does not fit one
// SM, and NHWC makes a group a strided set of short channel runs:
//   1. gn_stats: grid (row splits, N). Each block reads a contiguous slab of rows with all C channels
//      (fully coalesced 16-byte loads; a thread owns one channel vector and walks rows), keeps per-element
//      shifted sums (shift = the thread's first value, so no E[x^2]-E[x]^2 cancellation), turns them into
//      (count, mean, M2) and merges them per group with Chan's formula (a warp per group). One (mean, M2)
//      per (n, group, split) goes to the caller's fp32 workspace. Deterministic: fixed merge order.
//   2. gn_apply: grid (row splits, N). Each block first merges the split partials of every group (a warp
//      per group, fixed order), folds mean/rstd/gamma/beta/emb into one per-channel (a, b) pair in shared
//      memory, then streams its rows: y = silu?(a * x + b). One read of x (usually an L2 hit right after
//      pass 1 for tensors up to a few tens of MB) and one write of y.
// Traffic is therefore 2 reads + 1 write of the tensor; the second read is an L2 hit for tensors that fit
// in L2 (50 MB on H100), so large calls should approach copy bandwidth. Small calls (CIFAR: 128-256 KB)
// are latency-bound (two ~2-3 us launches); a single-kernel variant (one cluster per sample with
// distributed shared memory) is the next step if profiling says so.
// Vector width: 16 bytes (8 halves / 4 floats) when C and every pointer allow it, else scalar.
// Workspace: group_norm_workspace_bytes(p) (group_norm.h), a function of the shape only.
//
// Test: tests/gpu/group_norm_test.cpp (vs group_norm_ref over UNet shapes, all dtypes and fusions).
// Benchmark: bench (GB/s = (2 reads + 1 write) * bytes / time against the measured copy bandwidth).
#include <algorithm>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/group_norm/group_norm.h"

namespace diffrt {
namespace {

constexpr int kMaxChannels = 3072;  // apply smem (2C + 2G floats) stays <= 48 KB; SD's widest GN is 2560

struct GnShape {
  int n, hw, c, groups, cpg;
  int splits, rows_per_split;  // statistics row split (matches the workspace layout)
};

__device__ __forceinline__ int rows_in_split(int split, int rows_per_split, int hw) {
  int r0 = split * rows_per_split;
  return max(0, min(hw, r0 + rows_per_split) - r0);
}

// Pass 1. grid (splits, N), block (bdx, bdy); dynamic smem: float2 [bdy][C].
template <class T, int V>
__global__ void __launch_bounds__(512) gn_stats(const T* __restrict__ x, const T* __restrict__ emb,
                                                float2* __restrict__ part, GnShape s) {
  extern __shared__ float2 gn_smem_stats[];  // [bdy][C] (mean, M2) per channel and row lane
  const int n = blockIdx.y, split = blockIdx.x;
  const int row0 = split * s.rows_per_split;
  const int nrows = min(s.hw, row0 + s.rows_per_split) - row0;
  const int ty = threadIdx.y, bdy = blockDim.y;
  const int my_rows = nrows > ty ? (nrows - ty + bdy - 1) / bdy : 0;
  const T* xs = x + (size_t(n) * s.hw + row0) * s.c;  // x: [N, HW, C]

  for (int cv = threadIdx.x; cv * V < s.c; cv += blockDim.x) {
    const int c0 = cv * V;
    float e[V];
#pragma unroll
    for (int j = 0; j < V; ++j) e[j] = 0.0f;
    if (emb) load_vec_ro<T, V>(emb + size_t(n) * s.c + c0, e);  // emb: [N, C]
    float k[V], s1[V], s2[V];
#pragma unroll
    for (int j = 0; j < V; ++j) k[j] = s1[j] = s2[j] = 0.0f;
    if (my_rows > 0) {
      load_vec_ro<T, V>(xs + size_t(ty) * s.c + c0, k);
#pragma unroll
      for (int j = 0; j < V; ++j) k[j] += e[j];
      int r = ty + bdy;
      // Four independent loads in flight per iteration.
      for (; r + 3 * bdy < nrows; r += 4 * bdy) {
        float v[4][V];
#pragma unroll
        for (int u = 0; u < 4; ++u) load_vec_ro<T, V>(xs + size_t(r + u * bdy) * s.c + c0, v[u]);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
          for (int j = 0; j < V; ++j) {
            float d = v[u][j] + e[j] - k[j];
            s1[j] += d;
            s2[j] = fmaf(d, d, s2[j]);
          }
      }
      for (; r < nrows; r += bdy) {
        float v[V];
        load_vec_ro<T, V>(xs + size_t(r) * s.c + c0, v);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          float d = v[j] + e[j] - k[j];
          s1[j] += d;
          s2[j] = fmaf(d, d, s2[j]);
        }
      }
    }
    const float cnt = float(my_rows), inv = my_rows > 0 ? 1.0f / cnt : 0.0f;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float mean = k[j] + s1[j] * inv;
      float m2 = fmaxf(s2[j] - s1[j] * s1[j] * inv, 0.0f);
      gn_smem_stats[ty * s.c + c0 + j] = make_float2(mean, m2);
    }
  }
  __syncthreads();

  // A warp per group merges its cpg channels x bdy row lanes in a fixed order.
  const int tid = threadIdx.x + blockDim.x * ty;
  const int lane = tid & 31, warp = tid >> 5, nwarps = (blockDim.x * bdy) >> 5;  // full warps
  const int entries = s.cpg * bdy;
  for (int g = warp; warp < nwarps && g < s.groups; g += nwarps) {
    MeanM2 acc{0.0f, 0.0f, 0.0f};
    for (int i = lane; i < entries; i += 32) {
      int t = i / s.cpg, ch = g * s.cpg + i % s.cpg;
      int rows_t = nrows > t ? (nrows - t + bdy - 1) / bdy : 0;
      float2 st = gn_smem_stats[t * s.c + ch];
      acc = merge_stats(acc, MeanM2{float(rows_t), st.x, st.y});
    }
    acc = warp_merge_stats(acc);
    if (lane == 0) part[(size_t(n) * s.groups + g) * s.splits + split] = make_float2(acc.mean, acc.m2);
  }
}

// Pass 2. grid (apply splits, N), block (bdx, bdy); dynamic smem: float a[C], b[C].
template <class T, int V>
__global__ void __launch_bounds__(512) gn_apply(const T* x, T* y, const T* __restrict__ gamma,
                                                const T* __restrict__ beta, const T* __restrict__ emb,
                                                const float2* __restrict__ part, GnShape s,
                                                int apply_rows, EmbMode mode, bool silu, float eps) {
  extern __shared__ float gn_smem_coef[];  // a[C], b[C], group mean[G], group rstd[G]
  float* coef_a = gn_smem_coef;
  float* coef_b = coef_a + s.c;
  float* g_mean = coef_b + s.c;
  float* g_rstd = g_mean + s.groups;
  const int n = blockIdx.y;
  const int tid = threadIdx.x + blockDim.x * threadIdx.y;
  const int nthreads = blockDim.x * blockDim.y;
  const int lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;  // full warps only

  // 1. Group statistics from the split partials (fixed order: deterministic).
  if (warp < nwarps) {
    for (int g = warp; g < s.groups; g += nwarps) {
      MeanM2 acc{0.0f, 0.0f, 0.0f};
      const float2* pg = part + (size_t(n) * s.groups + g) * s.splits;
      for (int r = lane; r < s.splits; r += 32) {
        float2 st = pg[r];
        acc = merge_stats(acc, MeanM2{float(rows_in_split(r, s.rows_per_split, s.hw) * s.cpg), st.x, st.y});
      }
      acc = warp_merge_stats(acc);
      if (lane == 0) {
        float var = acc.n > 0.0f ? acc.m2 / acc.n : 0.0f;
        g_mean[g] = acc.mean;
        g_rstd[g] = rsqrtf(var + eps);
      }
    }
  }
  __syncthreads();
  // 2. Per-channel affine: y = a * x + b (for AddBeforeNorm the emb add is folded into b).
  for (int ch = tid; ch < s.c; ch += nthreads) {
    int g = ch / s.cpg;
    float ga = gamma ? to_f(gamma[ch]) : 1.0f;
    float be = beta ? to_f(beta[ch]) : 0.0f;
    float a = ga * g_rstd[g];
    float b = be - g_mean[g] * a;
    if (mode == EmbMode::AddBeforeNorm) {
      b = fmaf(a, to_f(emb[size_t(n) * s.c + ch]), b);
    } else if (mode == EmbMode::ScaleShift) {
      float sc = 1.0f + to_f(emb[size_t(n) * 2 * s.c + ch]);
      float sh = to_f(emb[size_t(n) * 2 * s.c + s.c + ch]);
      a *= sc;
      b = fmaf(b, sc, sh);
    }
    coef_a[ch] = a;
    coef_b[ch] = b;
  }
  __syncthreads();

  // 3. Stream the rows.
  const int row0 = blockIdx.x * apply_rows;
  const int row1 = min(s.hw, row0 + apply_rows);
  const size_t base = size_t(n) * s.hw * s.c;
  for (int cv = threadIdx.x; cv * V < s.c; cv += blockDim.x) {
    const int c0 = cv * V;
    float a[V], b[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      a[j] = coef_a[c0 + j];
      b[j] = coef_b[c0 + j];
    }
    int r = row0 + threadIdx.y;
    for (; r + 3 * int(blockDim.y) < row1; r += 4 * blockDim.y) {
      float v[4][V];
#pragma unroll
      for (int u = 0; u < 4; ++u) load_vec<T, V>(x + base + size_t(r + u * blockDim.y) * s.c + c0, v[u]);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
#pragma unroll
        for (int j = 0; j < V; ++j) {
          float t = fmaf(a[j], v[u][j], b[j]);
          v[u][j] = silu ? silu_f(t) : t;
        }
        store_vec<T, V>(y + base + size_t(r + u * blockDim.y) * s.c + c0, v[u]);
      }
    }
    for (; r < row1; r += blockDim.y) {
      float v[V];
      load_vec<T, V>(x + base + size_t(r) * s.c + c0, v);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        float t = fmaf(a[j], v[j], b[j]);
        v[j] = silu ? silu_f(t) : t;
      }
      store_vec<T, V>(y + base + size_t(r) * s.c + c0, v);
    }
  }
}

// Block shape: a thread per channel vector along x (up to 512), rows along y, ~256 threads.
dim3 gn_block(int c, int v) {
  int cv = c / v;
  int bdx = std::min(cv, 512);
  int bdy = std::max(1, 256 / bdx);
  return dim3(unsigned(bdx), unsigned(bdy));
}

template <class T, int V>
void gn_launch(const GroupNormParams& p, const GnShape& s, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  const T* emb = static_cast<const T*>(p.emb);
  float2* part = static_cast<float2*>(p.workspace);
  dim3 block = gn_block(s.c, V);

  size_t smem1 = size_t(block.y) * s.c * sizeof(float2);
  gn_stats<T, V><<<dim3(unsigned(s.splits), unsigned(s.n)), block, smem1, stream>>>(
      x, p.emb_mode == EmbMode::AddBeforeNorm ? emb : nullptr, part, s);
  DIFFRT_CUDA_CHECK_LAUNCH();

  int apply_splits = group_norm_row_splits(s.n, s.hw);
  int apply_rows = int(ceil_div(s.hw, apply_splits));
  apply_splits = int(ceil_div(s.hw, apply_rows));
  size_t smem2 = size_t(2) * (s.c + s.groups) * sizeof(float);
  gn_apply<T, V><<<dim3(unsigned(apply_splits), unsigned(s.n)), block, smem2, stream>>>(
      x, static_cast<T*>(p.y), static_cast<const T*>(p.gamma), static_cast<const T*>(p.beta),
      p.emb_mode == EmbMode::None ? nullptr : emb, part, s, apply_rows, p.emb_mode, p.silu, p.eps);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class T>
void gn_dispatch_vec(const GroupNormParams& p, const GnShape& s, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const size_t vb = kFull * sizeof(T);
  bool full = s.c % kFull == 0 && aligned_to(p.x, vb) && aligned_to(p.y, vb) &&
              aligned_to(p.emb, vb);  // gamma/beta are read per channel, not vectorised
  if (full) gn_launch<T, kFull>(p, s, stream);
  else gn_launch<T, 1>(p, s, stream);
}

}  // namespace

void group_norm_cuda(const GroupNormParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "group_norm_cuda: null x or y");
  DIFFRT_REQUIRE(p.n > 0 && p.hw > 0 && p.c > 0 && p.groups > 0 && p.c % p.groups == 0,
                 ErrorCode::InvalidArgument,
                 "group_norm_cuda: bad shape n=" + std::to_string(p.n) + " hw=" + std::to_string(p.hw) +
                     " c=" + std::to_string(p.c) + " groups=" + std::to_string(p.groups));
  DIFFRT_REQUIRE(p.c <= kMaxChannels, ErrorCode::Unsupported,
                 "group_norm_cuda: c=" + std::to_string(p.c) + " > " + std::to_string(kMaxChannels));
  DIFFRT_REQUIRE(p.emb_mode == EmbMode::None || p.emb, ErrorCode::InvalidArgument,
                 "group_norm_cuda: emb_mode needs emb");
  DIFFRT_REQUIRE(p.eps >= 0.0f, ErrorCode::InvalidArgument, "group_norm_cuda: negative eps");
  const size_t need = group_norm_workspace_bytes(p);
  DIFFRT_REQUIRE(p.workspace && p.workspace_bytes >= need && aligned_to(p.workspace, 16),
                 ErrorCode::InvalidArgument,
                 "group_norm_cuda: workspace must be 16-byte aligned and hold " + std::to_string(need) +
                     " bytes (have " + std::to_string(p.workspace_bytes) + ")");
  GnShape s{p.n, p.hw, p.c, p.groups, p.c / p.groups, 0, 0};
  s.splits = group_norm_row_splits(p.n, p.hw);
  s.rows_per_split = int(ceil_div(p.hw, s.splits));
  switch (p.dtype) {
    case DType::F32: gn_dispatch_vec<float>(p, s, stream); break;
    case DType::F16: gn_dispatch_vec<__half>(p, s, stream); break;
    case DType::BF16: gn_dispatch_vec<__nv_bfloat16>(p, s, stream); break;
  }
}

}  // namespace diffrt
