// Elementwise activations (formulas in activation.h): gelu = x * normcdff(x) (= 0.5 x erfc(-x/sqrt 2),
// accurate for x << 0), gelu_tanh = x / (1 + expf(-2z)) (= 0.5 x (1 + tanh z), z = sqrt(2/pi)(x + 0.044715 x^3),
// again without cancellation), quick_gelu = x / (1 + expf(-1.702 x)); fp32 math, one rounding
// to the storage type. A memory-bound 1-D grid-stride loop (64-bit indices, grid capped at 2^20 blocks of
// 256): 16-byte vectors (4 fp32 / 8 fp16 or bf16) when count is a multiple of the vector and x, y are 16-byte
// aligned, scalar elements otherwise. y may alias x exactly: each element is read and written by the same
// thread, so neither pointer is __restrict__. The kind is a template parameter (one branch-free kernel per
// kind and dtype). Traffic: 2 count s bytes, the minimum.
// Kept separate from the linear's epilogue on purpose: CLIP's MLP runs at 77 tokens per prompt, where one
// extra pass over [77, 3072] is negligible next to the GEMMs; fuse it into fc1's epilogue if a profile asks.
// Test: tests/gpu/activation_test.cpp (vs activation_ref, all kinds and dtypes, aligned / misaligned / odd
// counts, in place, guard bytes, poisoned outputs). Benchmark: bench/kernel_bench.cu, op activation (GB/s).
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/activation/activation.h"
#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"

namespace diffrt {
namespace {

constexpr int kThreads = 256;

template <ActivationKind K>
__device__ __forceinline__ float act(float x) {
  if constexpr (K == ActivationKind::Gelu) {
    return x * normcdff(x);
  } else if constexpr (K == ActivationKind::GeluTanh) {
    // 0.5 x (1 + tanh z) = x sigmoid(2 z), no cancellation for x << 0.
    return x / (1.0f + expf(-2.0f * 0.7978845608f * fmaf(0.044715f * x, x * x, x)));
  } else {
    return x / (1.0f + expf(-1.702f * x));
  }
}

template <class T, int V, ActivationKind K>
__global__ void __launch_bounds__(kThreads) activation_kernel(const T* x, T* y, long long nvec) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nvec; i += (long long)gridDim.x * blockDim.x) {
    float v[V];
    load_vec<T, V>(x + i * V, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = act<K>(v[j]);
    store_vec<T, V>(y + i * V, v);
  }
}

template <class T, ActivationKind K>
void launch_kind(const ActivationParams& p, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const bool wide = p.count % kFull == 0 && aligned_to(x, 16) && aligned_to(y, 16);
  const long long nvec = wide ? p.count / kFull : p.count;
  const unsigned grid = unsigned(std::max<long long>(1, std::min<long long>(ceil_div(nvec, kThreads), 1 << 20)));
  if (wide) activation_kernel<T, kFull, K><<<grid, kThreads, 0, stream>>>(x, y, nvec);
  else activation_kernel<T, 1, K><<<grid, kThreads, 0, stream>>>(x, y, nvec);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch(const ActivationParams& p, cudaStream_t stream) {
  switch (p.kind) {
    case ActivationKind::Gelu: launch_kind<T, ActivationKind::Gelu>(p, stream); break;
    case ActivationKind::GeluTanh: launch_kind<T, ActivationKind::GeluTanh>(p, stream); break;
    case ActivationKind::QuickGelu: launch_kind<T, ActivationKind::QuickGelu>(p, stream); break;
  }
}

}  // namespace

void activation_cuda(const ActivationParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "activation_cuda: bad dtype");
  DIFFRT_REQUIRE(p.kind == ActivationKind::Gelu || p.kind == ActivationKind::GeluTanh ||
                     p.kind == ActivationKind::QuickGelu,
                 ErrorCode::InvalidArgument, "activation_cuda: bad kind");
  DIFFRT_REQUIRE(p.count >= 0, ErrorCode::InvalidArgument, "activation_cuda: negative count");
  uint64_t bytes = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.count), dtype_size(p.dtype), &bytes) && bytes <= (uint64_t(1) << 62),
                 ErrorCode::InvalidArgument, "activation_cuda: count too large");
  if (p.count == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "activation_cuda: null pointer");
  const uintptr_t xa = reinterpret_cast<uintptr_t>(p.x), ya = reinterpret_cast<uintptr_t>(p.y);
  DIFFRT_REQUIRE(xa == ya || xa + bytes <= ya || ya + bytes <= xa, ErrorCode::InvalidArgument,
                 "activation_cuda: y partially overlaps x");
  switch (p.dtype) {
    case DType::F32: launch<float>(p, stream); break;
    case DType::F16: launch<__half>(p, stream); break;
    case DType::BF16: launch<__nv_bfloat16>(p, stream); break;
  }
}

}  // namespace diffrt
