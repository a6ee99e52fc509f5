// Shared helpers of the GPU kernel tests: skip without a device, device tensors with a poisoned body and
// guard bytes, storage-dtype rounding, and the error metric.
//
// Method (DESIGN.md "Numerics"): inputs are random fp32 values rounded to the storage dtype, so the CPU
// reference (fp32/double) sees exactly what the kernel reads. Every output buffer is filled with 0xFF
// bytes before the run (NaN in fp32, fp16 and bf16) and followed by kGuardBytes of a fixed pattern; after
// the run the guard must be intact (no out-of-bounds write) and no NaN/Inf may remain (every element
// written). The metric is the normalised MSE  sum (a - b)^2 / sum b^2  against the reference, with bounds:
//   fp32 1e-10  (exact fp32 math; only summation order and 1-ulp libm differences remain)
//   fp16 1e-5   (output rounding alone gives ~1e-7; fp16 intermediates such as attention's P add ~1e-6)
//   bf16 1e-4   (output rounding alone gives ~1.3e-6; bf16 P in attention ~1e-5)
// A test may pass a looser bound where an algorithm choice justifies it (documented at the call).
#pragma once
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "base/dtype.h"
#include "base/error.h"
#include "tests/test_util.h"

namespace diffrt::test {

inline bool gpu_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define DIFFRT_SKIP_WITHOUT_GPU()                                                 \
  do {                                                                             \
    int diffrt_ndev_ = 0;                                                          \
    if (cudaGetDeviceCount(&diffrt_ndev_) != cudaSuccess || diffrt_ndev_ == 0) {  \
      (void)cudaGetLastError();                                                    \
      GTEST_SKIP() << "no CUDA device";                                            \
    }                                                                              \
  } while (0)

inline double dtype_tolerance(DType t) {
  switch (t) {
    case DType::F32: return 1e-10;
    case DType::F16: return 1e-5;
    case DType::BF16: return 1e-4;
  }
  return 0;
}
constexpr DType kAllDtypes[] = {DType::F32, DType::F16, DType::BF16};

// Rounds v in place to what dtype t can store (round to nearest even).
inline void round_to(DType t, std::vector<float>& v) {
  if (t == DType::F32) return;
  std::vector<uint16_t> tmp(v.size());
  from_f32(t, v.data(), tmp.data(), v.size());
  to_f32(t, tmp.data(), v.data(), v.size());
}

inline std::vector<float> random_normal(size_t n, uint32_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline std::vector<float> random_uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// sum (a-b)^2 / sum b^2 in double; +inf if `got` holds a NaN/Inf or the sizes differ.
inline double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? num / den : num;
}
inline size_t count_nonfinite(const std::vector<float>& v) {
  size_t c = 0;
  for (float x : v) c += !std::isfinite(x);
  return c;
}

// A device array of `count` elements of `dtype`, placed `offset_elems` elements after a 256-byte aligned
// base (to exercise unaligned paths) and followed by kGuardBytes of guard pattern.
class DevTensor {
 public:
  static constexpr size_t kGuardBytes = 256;
  static constexpr uint8_t kGuard = 0xA5;
  DevTensor(size_t count, DType dtype, size_t offset_elems = 0)
      : count_(count), dtype_(dtype), offset_(offset_elems * dtype_size(dtype)),
        buf_(offset_ + count * dtype_size(dtype) + kGuardBytes) {
    DIFFRT_CUDA_CHECK(cudaMemset(buf_.get(), kGuard, buf_.bytes()));
  }
  void* ptr() const { return static_cast<char*>(buf_.get()) + offset_; }
  size_t count() const { return count_; }
  size_t bytes() const { return count_ * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }

  // Converts fp32 values to the dtype and uploads them (v.size() must equal count()).
  void upload(const std::vector<float>& v) {
    EXPECT_EQ(v.size(), count_);
    std::vector<uint8_t> raw(bytes());
    from_f32(dtype_, v.data(), raw.data(), count_);
    DIFFRT_CUDA_CHECK(cudaMemcpy(ptr(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
  }
  // Fills the body with 0xFF bytes: NaN in every dtype.
  void poison() { DIFFRT_CUDA_CHECK(cudaMemset(ptr(), 0xFF, bytes())); }
  std::vector<float> download() const {
    std::vector<uint8_t> raw(bytes());
    DIFFRT_CUDA_CHECK(cudaMemcpy(raw.data(), ptr(), raw.size(), cudaMemcpyDeviceToHost));
    std::vector<float> v(count_);
    to_f32(dtype_, raw.data(), v.data(), count_);
    return v;
  }
  // Raw bytes of the body.
  std::vector<uint8_t> download_raw() const {
    std::vector<uint8_t> raw(bytes());
    DIFFRT_CUDA_CHECK(cudaMemcpy(raw.data(), ptr(), raw.size(), cudaMemcpyDeviceToHost));
    return raw;
  }
  // True when the guard bytes after the body and the offset bytes before it are untouched.
  bool guards_intact() const {
    std::vector<uint8_t> all(buf_.bytes());
    DIFFRT_CUDA_CHECK(cudaMemcpy(all.data(), buf_.get(), all.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < offset_; ++i)
      if (all[i] != kGuard) return false;
    for (size_t i = offset_ + bytes(); i < all.size(); ++i)
      if (all[i] != kGuard) return false;
    return true;
  }

 private:
  size_t count_;
  DType dtype_;
  size_t offset_;
  DeviceBuffer buf_;
};

// Uploads `v` rounded to the dtype (v is rounded in place so the reference sees the same values).
inline DevTensor upload_rounded(std::vector<float>& v, DType t, size_t offset_elems = 0) {
  round_to(t, v);
  DevTensor d(v.size(), t, offset_elems);
  d.upload(v);
  return d;
}

inline void sync_check() { DIFFRT_CUDA_CHECK(cudaDeviceSynchronize()); }

// The standard verdict on one output: synchronises, then guard intact, every element finite, and
// nmse below `bound` (dtype_tolerance by default). `what` names the case in failure messages.
inline void expect_output_ok(const DevTensor& out, const std::vector<float>& ref, const std::string& what,
                             double bound = -1) {
  sync_check();
  if (bound < 0) bound = dtype_tolerance(out.dtype());
  EXPECT_TRUE(out.guards_intact()) << what << ": guard bytes overwritten";
  std::vector<float> got = out.download();
  EXPECT_EQ(count_nonfinite(got), 0u) << what << ": NaN/Inf in the output (unwritten or bad math)";
  double e = nmse(got, ref);
  EXPECT_LT(e, bound) << what << ": nmse " << e << " >= " << bound;
}

// The verdict on an output of `rows` rows of `ld` elements whose first `cols` hold the result: guard intact,
// the gap columns still hold the 0xFF poison, every result element finite, and nmse against `ref` (laid out
// as `out`) below the dtype's tolerance.
inline void expect_strided_output_ok(const DevTensor& out, const std::vector<float>& ref, size_t rows, int ld,
                                     int cols, const std::string& what) {
  EXPECT_TRUE(out.guards_intact()) << what << ": guard bytes overwritten";
  std::vector<float> all = out.download(), got, want;
  std::vector<uint8_t> raw = out.download_raw();
  const size_t es = dtype_size(out.dtype());
  size_t touched_gap = 0;
  for (size_t row = 0; row < rows; ++row) {
    for (int c = 0; c < ld; ++c) {
      const size_t i = row * ld + c;
      if (c < cols) {
        got.push_back(all[i]);
        want.push_back(ref[i]);
      } else {
        for (size_t by = 0; by < es; ++by) touched_gap += raw[i * es + by] != 0xFF;
      }
    }
  }
  EXPECT_EQ(touched_gap, 0u) << what << ": wrote into the ldo gap columns";
  EXPECT_EQ(count_nonfinite(got), 0u) << what << ": NaN/Inf in the output";
  const double e = nmse(got, want);
  EXPECT_LT(e, dtype_tolerance(out.dtype())) << what << ": nmse " << e;
}

// `p` with the operands of a linear or conv case (LinearParams, Conv2dParams): device buffers for the
// launch, host fp32 buffers for the CPU reference. bias and residual are null when the case has none.
template <class P>
P with_operands(P p, const void* x, const void* w, const void* bias, const void* residual, void* y) {
  p.x = x;
  p.w = w;
  p.bias = bias;
  p.residual = residual;
  p.y = y;
  return p;
}

// Element-wise equality, bit for bit when rel == 0 (two NaNs count as equal), else within
// rel * max(1, |want|); reports how many elements differ and the first.
inline void expect_same_values(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                               double rel = 0) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = rel == 0 ? std::memcmp(&got[i], &want[i], 4) == 0
                               : std::fabs(double(got[i]) - want[i]) <= rel * std::max(1.0, std::fabs(double(want[i])));
    if (!same && !(std::isnan(got[i]) && std::isnan(want[i]))) {
      if (!bad) first = i;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements differ, first at " << first << " got " << got[first]
                     << " want " << want[first];
}

// For fp16/bf16: the output's nmse `e` must stay within a small multiple of the error that rounding the exact
// reference to the dtype alone gives (the naive same-precision floor).
inline void expect_near_rounding_floor(double e, const std::vector<float>& ref, DType t, const std::string& what) {
  if (t == DType::F32) return;
  std::vector<float> rounded = ref;
  round_to(t, rounded);
  const double floor_e = nmse(rounded, ref);
  EXPECT_LE(e, 3.0 * floor_e + 1e-14) << what << ": nmse " << e << " vs output-rounding floor " << floor_e;
}

// Expects launch(p) to reject `p` with ErrorCode::InvalidArgument; `what` names the case.
template <typename Launch, typename Params>
void expect_invalid_args(Launch&& launch, const Params& p, const char* what) {
  expect_rejected(launch, p, ErrorCode::InvalidArgument, what);
}

}  // namespace diffrt::test
