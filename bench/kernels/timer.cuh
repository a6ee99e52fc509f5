// Timing of diffrt_kernel_bench: CUDA events around each rep, L2 flushed before it, order statistics.
//
// Method (DESIGN.md "Performance: how we measure"):
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
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

#include "kernels/common/cuda_check.h"

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
  Timer(cudaStream_t stream, const TimerConfig& cfg);
  ~Timer();
  const TimerConfig& config() const { return cfg_; }
  cudaStream_t stream() const { return stream_; }

  // Evicts L2 by reading the flush buffer on stream() (nothing with --hot).
  void flush();

  // Times `fn` (which must enqueue its work on stream()). `reps_override` > 0 forces a rep count.
  Stats time(const std::function<void()>& fn, int reps_override = 0);

 private:
  void ensure_events(size_t n);
  cudaStream_t stream_;
  TimerConfig cfg_;
  diffrt::DeviceBuffer flush_, sink_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace bench
