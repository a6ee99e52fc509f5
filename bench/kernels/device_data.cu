// The fill kernels behind bench::fill_uniform (device_data.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bench/kernels/device_data.cuh"

namespace bench {
namespace {

__device__ __forceinline__ uint32_t hash_u32(uint32_t x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}
__device__ __forceinline__ float hash_uniform(size_t i, uint32_t seed, float lo, float hi) {
  uint32_t h = hash_u32(uint32_t(i) ^ hash_u32(seed + uint32_t(i >> 32) * 0x9e3779b9U));
  float u = float(h >> 8) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * u;
}
__global__ void fill_f32_kernel(float* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = hash_uniform(i, seed, lo, hi);
}
__global__ void fill_f16_kernel(__half* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2half_rn(hash_uniform(i, seed, lo, hi));
}
__global__ void fill_bf16_kernel(__nv_bfloat16* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(hash_uniform(i, seed, lo, hi));
}

}  // namespace

void fill_uniform(void* p, size_t n, diffrt::DType t, uint32_t seed, float lo, float hi, cudaStream_t s) {
  if (n == 0) return;
  unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 8192));
  switch (t) {
    case diffrt::DType::F32: fill_f32_kernel<<<blocks, 256, 0, s>>>(static_cast<float*>(p), n, seed, lo, hi); break;
    case diffrt::DType::F16: fill_f16_kernel<<<blocks, 256, 0, s>>>(static_cast<__half*>(p), n, seed, lo, hi); break;
    case diffrt::DType::BF16:
      fill_bf16_kernel<<<blocks, 256, 0, s>>>(static_cast<__nv_bfloat16*>(p), n, seed, lo, hi);
      break;
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace bench
