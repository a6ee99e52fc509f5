// Device helpers of the CUDA executor and sampler (contracts in cuda_kernels.h). All tiny and memory-bound;
// the only one with numerics is philox_initial_noise, which must give the CPU generator's bits (it calls the
// shared kernels/common/philox.h, whose device path uses explicit _rn intrinsics).
#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/philox.h"
#include "runtime/cuda/cuda_kernels.h"

namespace diffrt::cuda_rt {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(long long work) {
  return unsigned(std::max<long long>(1, std::min<long long>(ceil_div(work, kThreads), 1 << 20)));
}

__global__ void fill_timesteps_kernel(const float* table, const int* counter, float* out, int n) {
  const float t = table[*counter];
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = t;
}

template <class W>
__global__ void copy_slice_kernel(const W* table, const int* counter, long long words, W* out) {
  const W* src = table + (long long)(*counter) * words;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < words; i += (long long)gridDim.x * blockDim.x)
    out[i] = src[i];
}

__global__ void increment_kernel(int* counter) { *counter += 1; }

__global__ void initial_noise_kernel(float* x, uint64_t seed, uint32_t base, int b, long long hw, int c) {
  const long long n_per = hw * c;
  const long long groups = (n_per + 3) / 4;
  const long long total = groups * b;
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
    const int n = int(t / groups);
    const uint32_t g = uint32_t(t % groups);
    float four[4];
    philox::normal4(seed, base + uint32_t(n), 0, philox::kTagInitial, g, four);
    for (int k = 0; k < 4; ++k) {
      const long long e = (long long)g * 4 + k;  // NCHW element index
      if (e >= n_per) break;
      const long long ch = e / hw, pix = e % hw;
      x[n * n_per + pix * c + ch] = four[k];
    }
  }
}

template <class T>
__global__ void broadcast_kernel(const float* x, T* out, int b, int bm, long long n_per) {
  const long long total = (long long)bm * n_per;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / n_per, j = i % n_per;
    out[i] = from_f<T>(x[(r % b) * n_per + j]);
  }
}

}  // namespace

void fill_timesteps(const float* table, const int* counter, float* out, int n, cudaStream_t stream) {
  fill_timesteps_kernel<<<grid_for(n), kThreads, 0, stream>>>(table, counter, out, n);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

void copy_step_slice(const void* table, const int* counter, size_t slice_bytes, void* out, cudaStream_t stream) {
  if (slice_bytes % 16 == 0 && aligned_to(table, 16) && aligned_to(out, 16)) {
    const long long words = (long long)(slice_bytes / 16);
    copy_slice_kernel<uint4><<<grid_for(words), kThreads, 0, stream>>>(static_cast<const uint4*>(table), counter, words,
                                                                       static_cast<uint4*>(out));
  } else {
    const long long words = (long long)(slice_bytes / 2);
    copy_slice_kernel<uint16_t><<<grid_for(words), kThreads, 0, stream>>>(static_cast<const uint16_t*>(table), counter,
                                                                          words, static_cast<uint16_t*>(out));
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

void increment_counter(int* counter, cudaStream_t stream) {
  increment_kernel<<<1, 1, 0, stream>>>(counter);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

void philox_initial_noise(float* x, uint64_t seed, uint32_t sample_base, int b, int h, int w, int c,
                          cudaStream_t stream) {
  const long long hw = (long long)h * w;
  initial_noise_kernel<<<grid_for((hw * c + 3) / 4 * b), kThreads, 0, stream>>>(x, seed, sample_base, b, hw, c);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

void broadcast_model_in(const float* x, void* model_in, DType dtype, int b, int bm, int64_t n_per,
                        cudaStream_t stream) {
  const unsigned g = grid_for((long long)bm * n_per);
  switch (dtype) {
    case DType::F32: broadcast_kernel<float><<<g, kThreads, 0, stream>>>(x, static_cast<float*>(model_in), b, bm, n_per); break;
    case DType::F16: broadcast_kernel<__half><<<g, kThreads, 0, stream>>>(x, static_cast<__half*>(model_in), b, bm, n_per); break;
    case DType::BF16:
      broadcast_kernel<__nv_bfloat16><<<g, kThreads, 0, stream>>>(x, static_cast<__nv_bfloat16*>(model_in), b, bm, n_per);
      break;
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

void preload() {
  cudaFuncAttributes attr;
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, fill_timesteps_kernel));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, copy_slice_kernel<uint4>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, copy_slice_kernel<uint16_t>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, increment_kernel));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, initial_noise_kernel));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, broadcast_kernel<float>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, broadcast_kernel<__half>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, broadcast_kernel<__nv_bfloat16>));
}

}  // namespace diffrt::cuda_rt
