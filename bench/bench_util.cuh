// Helpers of diffrt_kernel_bench (bench/kernel_bench.cu): timing with CUDA events, L2 flushing, random
// device data, order statistics and the environment facts recorded with every result.
//
// Timing method (DESIGN.md "Performance: how we measure"):
//   * one untimed call first (plan creation, cuDNN algorithm search, module load), then `warmup` more;
//   * reps are sized so that one case costs about `case_budget_s` of GPU time, clamped to
//     [min_reps, reps];
//   * before every timed rep (unless --hot) a kernel READS a 256 MB buffer, which evicts the 50-60 MB L2
//     of an H100/H200. A read is used rather than a write so the timed region does not also pay for
//     writing back dirty flush lines; the flush runs outside the event pair;
//   * each rep is bracketed by its own event pair on the same stream; all reps are queued, then one
//     synchronise, then elapsed times are read. Reported: median, p90, p99, min, mean (microseconds).
//   Event timing resolves ~0.5-1 us; figures for kernels of a few microseconds are latency-dominated.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "base/dtype.h"
#include "base/host_env.h"
#include "runtime/cuda/cuda_env.h"

namespace bench {

struct Stats {
  double median_us = 0, p90_us = 0, p99_us = 0, min_us = 0, mean_us = 0;
  int reps = 0;
};

// Linear-interpolated quantile of a sorted vector (q in [0, 1]).
inline double quantile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  double pos = q * double(v.size() - 1);
  size_t lo = size_t(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  double f = pos - double(lo);
  return v[lo] * (1 - f) + v[hi] * f;
}

inline Stats summarize(std::vector<double> us) {
  Stats s;
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  s.reps = int(us.size());
  s.median_us = quantile_sorted(us, 0.5);
  s.p90_us = quantile_sorted(us, 0.9);
  s.p99_us = quantile_sorted(us, 0.99);
  s.min_us = us.front();
  double sum = 0;
  for (double x : us) sum += x;
  s.mean_us = sum / double(us.size());
  return s;
}

// ---- device kernels used by the harness -----------------------------------------------------------

// Reads n int4s; writes only if a value equals an impossible pattern, so the loads cannot be removed.
__global__ void flush_read_kernel(const int4* __restrict__ p, size_t n, int* __restrict__ sink) {
  int acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    int4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x7eadbeef) *sink = acc;
}

// Hash-based uniform values in [lo, hi) for every dtype. Never zeros (METHOD.md: zeros hide bugs and
// can run faster than real data).
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

inline void fill_uniform(void* p, size_t n, diffrt::DType t, uint32_t seed, float lo = -1.f, float hi = 1.f,
                         cudaStream_t s = nullptr) {
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

// ---- the timer -----------------------------------------------------------------------------------

struct TimerConfig {
  int reps = 100;             // upper bound on timed reps per case
  int min_reps = 10;          // lower bound, even for slow cases
  int warmup = 5;             // untimed calls after the first one
  double case_budget_s = 0.4; // GPU time one case may take (sets reps between min_reps and reps)
  bool flush_l2 = true;
  size_t flush_bytes = size_t(256) << 20;
};

class Timer {
 public:
  Timer(cudaStream_t stream, const TimerConfig& cfg) : stream_(stream), cfg_(cfg) {
    if (cfg_.flush_l2) {
      flush_.allocate(cfg_.flush_bytes);
      DIFFRT_CUDA_CHECK(cudaMemsetAsync(flush_.get(), 0x3c, cfg_.flush_bytes, stream_));
      sink_.allocate(sizeof(int));
    }
  }
  ~Timer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  const TimerConfig& config() const { return cfg_; }
  cudaStream_t stream() const { return stream_; }

  void flush() {
    if (!cfg_.flush_l2) return;
    size_t n = cfg_.flush_bytes / sizeof(int4);
    flush_read_kernel<<<1024, 512, 0, stream_>>>(flush_.as<int4>(), n, sink_.as<int>());
    DIFFRT_CUDA_CHECK_LAUNCH();
  }

  // Times `fn` (which must enqueue its work on stream()). `reps_override` > 0 forces a rep count.
  Stats time(const std::function<void()>& fn, int reps_override = 0) {
    // First call: plans, algorithm search, lazy module load. Then a short timed probe to size reps.
    fn();
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    ensure_events(2);
    flush();
    DIFFRT_CUDA_CHECK(cudaEventRecord(events_[0], stream_));
    fn();
    DIFFRT_CUDA_CHECK(cudaEventRecord(events_[1], stream_));
    DIFFRT_CUDA_CHECK(cudaEventSynchronize(events_[1]));
    float probe_ms = 0;
    DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&probe_ms, events_[0], events_[1]));
    for (int i = 0; i < cfg_.warmup; ++i) fn();

    int reps = reps_override > 0 ? reps_override : cfg_.reps;
    if (reps_override <= 0) {
      double per = std::max(1e-3, double(probe_ms)) * 1e-3 + (cfg_.flush_l2 ? 100e-6 : 0.0);
      int fit = int(cfg_.case_budget_s / per);
      reps = std::max(std::min(cfg_.reps, cfg_.min_reps), std::min(reps, fit));
    }
    ensure_events(2 * size_t(reps));
    for (int r = 0; r < reps; ++r) {
      flush();
      DIFFRT_CUDA_CHECK(cudaEventRecord(events_[2 * r], stream_));
      fn();
      DIFFRT_CUDA_CHECK(cudaEventRecord(events_[2 * r + 1], stream_));
    }
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> us(reps);
    for (int r = 0; r < reps; ++r) {
      float ms = 0;
      DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * r], events_[2 * r + 1]));
      us[r] = double(ms) * 1e3;
    }
    return summarize(std::move(us));
  }

 private:
  void ensure_events(size_t n) {
    while (events_.size() < n) {
      cudaEvent_t e;
      DIFFRT_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
  }
  cudaStream_t stream_;
  TimerConfig cfg_;
  diffrt::DeviceBuffer flush_, sink_;
  std::vector<cudaEvent_t> events_;
};

// ---- environment facts ---------------------------------------------------------------------------

// NVML (dlopen) and the date: shared with diffrt bench / profile (runtime/cuda/cuda_env.h, base/host_env.h).
using diffrt::NvmlInfo;
using diffrt::query_nvml;
using diffrt::utc_now_iso;

}  // namespace bench
