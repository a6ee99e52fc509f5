// Random device inputs of diffrt_kernel_bench: hash-based uniform values in [lo, hi) for every dtype, never
// zeros (zeros hide bugs and can run faster than real data).
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "kernels/common/cuda_check.h"

namespace bench {

// Fills n elements of dtype t at p on stream s.
void fill_uniform(void* p, size_t n, diffrt::DType t, uint32_t seed, float lo = -1.f, float hi = 1.f,
                  cudaStream_t s = nullptr);

// A device buffer of `n` elements of dtype `t`, filled with random values.
struct DevArray {
  diffrt::DeviceBuffer buf;
  size_t n = 0;
  diffrt::DType t = diffrt::DType::F32;
  DevArray() = default;
  DevArray(size_t count, diffrt::DType dtype, uint32_t seed, float lo = -1.f, float hi = 1.f)
      : buf(std::max<size_t>(count, 1) * diffrt::dtype_size(dtype)), n(count), t(dtype) {
    fill_uniform(buf.get(), n, t, seed, lo, hi);
  }
  void* get() const { return buf.get(); }
  template <class T>
  T* as() const { return buf.as<T>(); }
  size_t bytes() const { return n * diffrt::dtype_size(t); }
};

}  // namespace bench
