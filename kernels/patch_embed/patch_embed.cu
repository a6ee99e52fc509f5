// DiT patch embedding on the GPU (formula and layouts in patch_embed.h): conv(k=p, s=p) + bias + the 2-D sin-cos
// position table, in one pass, writing every token once.
//
// The GEMM is tiny (K = p*p*Cin = 16 for DiT-XL/2: 32 FLOPs per output), so the kernel is bound by writing y
// (N*L*D elements) and by computing the table; neither cuDNN nor a tensor-core GEMM helps. Work split:
//   grid (ceil(L/TT), ceil(D/128)), block 128: a block owns TT = 16 tokens (grid positions) x 128 channels and
//   loops over the batch. Each thread owns one channel d: it computes the TT table entries pos(i, j, d) once (in
//   double, as numpy does, then fp32) and keeps them in registers for every sample, so the double sin/cos cost is
//   L*D per call, not N*L*D. Per sample, the TT patch vectors are staged in shared memory in K-chunks of 256
//   (fp32), and the thread accumulates TT fp32 sums over k with its weight row w[d, :] (read through L1: the same
//   row serves TT tokens). Stores: consecutive threads write consecutive channels of a token (coalesced).
// Exactness: the conv sums in fp32 (the reference sums in double), the table entry is the correctly computed
// double rounded to fp32 (CUDA's double sin/cos/pow are within 2 ulp of double, far below fp32's resolution).
//
// Test: tests/gpu/dit_test.cpp (vs patch_embed_ref: DiT-XL/2 256/512 shapes, patch 1/2/4/8, odd Cin, non-square
// grids, all dtypes, guard bytes, poisoned outputs). Benchmark: bench/kernel_bench.cu, op patch_embed (GB/s).
#include <algorithm>
#include <cmath>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/patch_embed/patch_embed.h"

namespace diffrt {
namespace {

constexpr int kTT = 16;       // tokens per block
constexpr int kThreads = 128;  // channels per block
constexpr int kKC = 256;      // K chunk staged in shared memory

struct PeArgs {
  const void* x;
  const void* w;
  const void* bias;
  void* y;
  int n, h, w_in, cin, dim, patch, gh, gw, base_size;
  float interp;
  bool pos_embed;
};

__device__ double pos_value_dev(int i, int j, int d, int gh, int gw, int dim, int base_size, float interp) {
  const int half = dim / 2, quarter = dim / 4;
  const bool use_col = d < half;
  const int g = use_col ? gw : gh;
  const int idx = use_col ? j : i;
  const int e = d % half;
  const float step = __double2float_rn(double(g) / double(base_size));
  const float pos = __fdiv_rn(__fdiv_rn(float(idx), step), interp);
  const int k = e < quarter ? e : e - quarter;
  const double omega = 1.0 / pow(10000.0, double(k) / (double(half) / 2.0));
  const double arg = double(pos) * omega;
  return e < quarter ? sin(arg) : cos(arg);
}

template <class T>
__global__ void __launch_bounds__(kThreads) patch_embed_kernel(PeArgs a) {
  __shared__ float patch[kTT][kKC];
  const int L = a.gh * a.gw, P = a.patch, C = a.cin, K = P * P * C;
  const int t0 = blockIdx.x * kTT;
  const int d = blockIdx.y * kThreads + threadIdx.x;
  const bool live = d < a.dim;
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y);

  float pos[kTT];
#pragma unroll
  for (int t = 0; t < kTT; ++t) {
    pos[t] = 0.0f;
    const int tok = t0 + t;
    if (a.pos_embed && live && tok < L)
      pos[t] = __double2float_rn(pos_value_dev(tok / a.gw, tok % a.gw, d, a.gh, a.gw, a.dim, a.base_size, a.interp));
  }
  const float b = (bias && live) ? to_f(bias[d]) : 0.0f;
  const T* wd = w + (long long)(live ? d : 0) * K;

  for (int n = 0; n < a.n; ++n) {
    float acc[kTT];
#pragma unroll
    for (int t = 0; t < kTT; ++t) acc[t] = b;
    for (int k0 = 0; k0 < K; k0 += kKC) {
      const int kc = min(kKC, K - k0);
      __syncthreads();  // the previous chunk is consumed
      for (int idx = threadIdx.x; idx < kTT * kc; idx += kThreads) {
        const int t = idx / kc, kk = idx % kc, k = k0 + kk, tok = t0 + t;
        float v = 0.0f;
        if (tok < L) {
          const int i = tok / a.gw, j = tok % a.gw;
          const int u = k / (P * C), vv = (k / C) % P, c = k % C;
          v = to_f(x[((long long)n * a.h + (long long)i * P + u) * a.w_in * C + ((long long)j * P + vv) * C + c]);
        }
        patch[t][kk] = v;
      }
      __syncthreads();
      if (live) {
        for (int kk = 0; kk < kc; ++kk) {
          const float wk = to_f(wd[k0 + kk]);
#pragma unroll
          for (int t = 0; t < kTT; ++t) acc[t] = fmaf(patch[t][kk], wk, acc[t]);
        }
      }
    }
    if (live) {
#pragma unroll
      for (int t = 0; t < kTT; ++t) {
        const int tok = t0 + t;
        if (tok < L) y[((long long)n * L + tok) * a.dim + d] = from_f<T>(acc[t] + pos[t]);
      }
    }
  }
}

bool overlaps(const void* a, size_t an, const void* b, size_t bn) {
  if (!a || !b || an == 0 || bn == 0) return false;
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + bn && pb < pa + an;
}

}  // namespace

void patch_embed_cuda(const PatchEmbedParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "patch_embed_cuda: bad dtype");
  DIFFRT_REQUIRE(p.n >= 0 && p.patch >= 1 && p.h >= 0 && p.w_in >= 0 && p.h % p.patch == 0 && p.w_in % p.patch == 0 &&
                     p.cin > 0 && p.dim > 0,
                 ErrorCode::InvalidArgument,
                 "patch_embed_cuda: bad shape n=" + std::to_string(p.n) + " h=" + std::to_string(p.h) + " w=" +
                     std::to_string(p.w_in) + " p=" + std::to_string(p.patch) + " cin=" + std::to_string(p.cin) +
                     " dim=" + std::to_string(p.dim));
  DIFFRT_REQUIRE(!p.pos_embed || (p.dim % 4 == 0 && p.base_size > 0 && p.interpolation_scale > 0.0f &&
                                  std::isfinite(p.interpolation_scale)),
                 ErrorCode::InvalidArgument, "patch_embed_cuda: the position table needs dim % 4 == 0, base_size > 0 "
                                             "and a finite interpolation_scale > 0");
  const int gh = p.h / p.patch, gw = p.w_in / p.patch;
  const size_t es = dtype_size(p.dtype);
  uint64_t in_bytes = 0, out_bytes = 0, w_bytes = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.n) * uint64_t(p.h) * uint64_t(p.w_in), uint64_t(p.cin) * es, &in_bytes) &&
                     mul_ok(uint64_t(p.n) * uint64_t(gh) * uint64_t(gw), uint64_t(p.dim) * es, &out_bytes) &&
                     mul_ok(uint64_t(p.dim) * uint64_t(p.patch) * uint64_t(p.patch), uint64_t(p.cin) * es, &w_bytes) &&
                     uint64_t(p.patch) * p.patch * p.cin < (1u << 30),
                 ErrorCode::InvalidArgument, "patch_embed_cuda: size overflows");
  if (p.n == 0 || gh == 0 || gw == 0) return;
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::InvalidArgument, "patch_embed_cuda: null pointer");
  DIFFRT_REQUIRE(!overlaps(p.y, out_bytes, p.x, in_bytes) && !overlaps(p.y, out_bytes, p.w, w_bytes) &&
                     !overlaps(p.y, out_bytes, p.bias, size_t(p.dim) * es),
                 ErrorCode::InvalidArgument, "patch_embed_cuda: y overlaps an input");
  const long long L = (long long)gh * gw;
  DIFFRT_REQUIRE(ceil_div(L, kTT) <= 0x7fffffffLL && ceil_div(p.dim, kThreads) <= 65535, ErrorCode::Unsupported,
                 "patch_embed_cuda: grid too large");
  PeArgs a{p.x, p.w, p.bias, p.y, p.n, p.h, p.w_in, p.cin, p.dim, p.patch, gh, gw, p.base_size,
           p.interpolation_scale, p.pos_embed};
  const dim3 grid(unsigned(ceil_div(L, kTT)), unsigned(ceil_div(p.dim, kThreads)));
  switch (p.dtype) {
    case DType::F32: patch_embed_kernel<float><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::F16: patch_embed_kernel<__half><<<grid, kThreads, 0, stream>>>(a); break;
    case DType::BF16: patch_embed_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(a); break;
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace diffrt
