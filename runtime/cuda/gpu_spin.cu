// gpu_spin (contract in gpu_spin.h). %globaltimer is the GPU's nanosecond clock (sm_70+ for __nanosleep).
#include "kernels/common/cuda_check.h"
#include "runtime/cuda/gpu_spin.h"

namespace diffrt::cuda_rt {

namespace {

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spin_kernel(unsigned long long ns) {
  const unsigned long long start = global_ns();
  while (global_ns() - start < ns) __nanosleep(500);
}

}  // namespace

void gpu_spin(uint64_t ns, cudaStream_t stream) {
  const unsigned long long capped = ns > 1000000000ull ? 1000000000ull : ns;
  spin_kernel<<<1, 1, 0, stream>>>(capped);
  DIFFRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace diffrt::cuda_rt
