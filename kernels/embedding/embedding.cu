// Token + position embedding gather (formula in embedding.h). A warp per token row, 4 rows per 128-thread
// block, grid-stride over the n*l rows (grid capped at 2^20 blocks): the warp reads its id once, then copies
// the token row and adds the position row with 16-byte vectors (when C is a multiple of the vector and the
// tables and y are 16-byte aligned; scalar otherwise), fp32 sum, one rounding. Traffic: n l C s bytes
// written, as many read from the token table (+ the position rows, cache-resident: l <= 77 for CLIP).
// An id outside [0, vocab) cannot raise an error from the device: its row is written as NaN instead, so a
// bad id never reads out of bounds and never passes unnoticed (the executor validates ids on the host).
// Test: tests/gpu/embedding_test.cpp (vs embedding_ref, CLIP shapes, odd C, misaligned, all dtypes, guard
// bytes, poisoned outputs, bad ids -> NaN rows). Benchmark: bench/kernel_bench.cu, op embedding (GB/s).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/embedding/embedding.h"

namespace diffrt {
namespace {

constexpr int kRowsPerBlock = 4;

template <class T, int V>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    embedding_kernel(const int32_t* __restrict__ ids, const T* __restrict__ tok, const T* __restrict__ pos,
                     T* __restrict__ y, long long rows, int l, int c, int vocab) {
  const int nvec = c / V;
  const int lane = threadIdx.x & 31;
  for (long long r = blockIdx.x * (long long)kRowsPerBlock + (threadIdx.x >> 5); r < rows;
       r += (long long)gridDim.x * kRowsPerBlock) {
    const int id = ids[r];
    T* yr = y + r * c;  // y: [n*l, C]
    if (id < 0 || id >= vocab) {
      float v[V];
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = __int_as_float(0x7fc00000);  // NaN
      for (int i = lane; i < nvec; i += 32) store_vec<T, V>(yr + i * V, v);
      continue;
    }
    const T* tr = tok + (long long)id * c;                  // token_table: [vocab, C]
    const T* pr = pos ? pos + (long long)(r % l) * c : nullptr;  // pos_table: [max_positions, C]
    for (int i = lane; i < nvec; i += 32) {
      float v[V], q[V];
      load_vec_ro<T, V>(tr + i * V, v);
      if (pr) {
        load_vec_ro<T, V>(pr + i * V, q);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] += q[j];
      }
      store_vec<T, V>(yr + i * V, v);
    }
  }
}

template <class T>
void launch(const EmbeddingParams& p, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const T* tok = static_cast<const T*>(p.token_table);
  const T* pos = static_cast<const T*>(p.pos_table);
  T* y = static_cast<T*>(p.y);
  const bool wide = p.c % kFull == 0 && aligned_to(tok, 16) && aligned_to(y, 16) && (!pos || aligned_to(pos, 16));
  const long long rows = (long long)p.n * p.l;
  const unsigned grid = unsigned(std::min<long long>(ceil_div(rows, kRowsPerBlock), 1 << 20));
  if (wide)
    embedding_kernel<T, kFull><<<grid, 32 * kRowsPerBlock, 0, stream>>>(p.ids, tok, pos, y, rows, p.l, p.c, p.vocab);
  else
    embedding_kernel<T, 1><<<grid, 32 * kRowsPerBlock, 0, stream>>>(p.ids, tok, pos, y, rows, p.l, p.c, p.vocab);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding_cuda(const EmbeddingParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "embedding_cuda: bad dtype");
  DIFFRT_REQUIRE(p.n >= 0 && p.l >= 0 && p.c > 0 && p.vocab > 0, ErrorCode::InvalidArgument,
                 "embedding_cuda: bad shape n=" + std::to_string(p.n) + " l=" + std::to_string(p.l) +
                     " c=" + std::to_string(p.c) + " vocab=" + std::to_string(p.vocab));
  DIFFRT_REQUIRE(!p.pos_table || (p.max_positions > 0 && p.l <= p.max_positions), ErrorCode::InvalidArgument,
                 "embedding_cuda: " + std::to_string(p.l) + " tokens but " + std::to_string(p.max_positions) +
                     " positions");
  uint64_t bytes = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.n) * uint64_t(p.l), uint64_t(p.c) * dtype_size(p.dtype), &bytes) &&
                     mul_ok(uint64_t(p.vocab), uint64_t(p.c) * dtype_size(p.dtype), &bytes),
                 ErrorCode::InvalidArgument, "embedding_cuda: size overflows");
  if (p.n == 0 || p.l == 0) return;
  DIFFRT_REQUIRE(p.ids && p.token_table && p.y, ErrorCode::InvalidArgument, "embedding_cuda: null pointer");
  switch (p.dtype) {
    case DType::F32: launch<float>(p, stream); break;
    case DType::F16: launch<__half>(p, stream); break;
    case DType::BF16: launch<__nv_bfloat16>(p, stream); break;
  }
}

}  // namespace diffrt
