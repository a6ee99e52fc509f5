// DiT unpatchify on the GPU (formula and layouts in unpatchify.h): one thread per output element, grid-stride;
// reads gather C-channel runs of a token row, writes are fully coalesced. A permutation of a small tensor
// (N x H x W x C_out: 2 x 32 x 32 x 8 for DiT-XL/2 256 with CFG), so a plain copy kernel is the right tool.
// Test: tests/gpu/dit_test.cpp (vs unpatchify_ref, patch 1/2/4, odd C, non-square grids, all dtypes, guard bytes).
#include <algorithm>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/unpatchify/unpatchify.h"

namespace diffrt {
namespace {

template <class T>
__global__ void unpatchify_kernel(const T* __restrict__ x, T* __restrict__ y, long long total, int gh, int gw, int P,
                                  int C) {
  const int W = gw * P, H = gh * P;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int c = int(e % C);
    const long long pix = e / C;
    const int ox = int(pix % W);
    const long long r = pix / W;
    const int oy = int(r % H);
    const long long n = r / H;
    const int i = oy / P, u = oy % P, j = ox / P, v = ox % P;
    y[e] = x[((n * gh + i) * gw + j) * (long long)(P * P * C) + (u * P + v) * C + c];
  }
}

}  // namespace

void unpatchify_cuda(const UnpatchifyParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "unpatchify_cuda: bad dtype");
  DIFFRT_REQUIRE(p.n >= 0 && p.gh >= 0 && p.gw >= 0 && p.patch >= 1 && p.c > 0, ErrorCode::InvalidArgument,
                 "unpatchify_cuda: bad shape");
  uint64_t total = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.n) * uint64_t(p.gh) * uint64_t(p.gw), uint64_t(p.patch) * p.patch * p.c, &total) &&
                     total < (uint64_t(1) << 62),
                 ErrorCode::InvalidArgument, "unpatchify_cuda: size overflows");
  if (total == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "unpatchify_cuda: null pointer");
  const size_t bytes = size_t(total) * dtype_size(p.dtype);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p.x), b = reinterpret_cast<uintptr_t>(p.y);
  DIFFRT_REQUIRE(a + bytes <= b || b + bytes <= a, ErrorCode::InvalidArgument, "unpatchify_cuda: y overlaps x");
  const unsigned grid = unsigned(std::max<long long>(1, std::min<long long>(ceil_div((long long)total, 256), 1 << 16)));
  switch (p.dtype) {
    case DType::F32:
      unpatchify_kernel<float><<<grid, 256, 0, stream>>>(static_cast<const float*>(p.x), static_cast<float*>(p.y),
                                                         (long long)total, p.gh, p.gw, p.patch, p.c);
      break;
    case DType::F16:
      unpatchify_kernel<__half><<<grid, 256, 0, stream>>>(static_cast<const __half*>(p.x), static_cast<__half*>(p.y),
                                                          (long long)total, p.gh, p.gw, p.patch, p.c);
      break;
    case DType::BF16:
      unpatchify_kernel<__nv_bfloat16><<<grid, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(p.x),
                                                                 static_cast<__nv_bfloat16*>(p.y), (long long)total,
                                                                 p.gh, p.gw, p.patch, p.c);
      break;
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace diffrt
