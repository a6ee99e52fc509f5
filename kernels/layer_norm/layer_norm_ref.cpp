// CPU reference LayerNorm over the last dimension (torch.nn.LayerNorm / F.layer_norm):
//   mean_r = sum_c x[r, c] / C                        (double)
//   var_r  = sum_c (x[r, c] - mean_r)^2 / C           (double, biased, two-pass: exact for large means)
//   y[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * gamma[c] + beta[c]   (double, rounded to fp32)
// Modulated (adaLN): yn = float(the above); y = yn * (1 + scale[s, c]) + shift[s, c] in fp32, one rounding per op
// as torch's eager ops (s = r / rows_per_sample).
// Layout: x, y [rows, C], rows contiguous. gamma/beta [C], either may be null (1 / 0). y may alias x:
// each row's statistics are complete before any element of that row is written, and rows are
// independent. Rows run in parallel (OpenMP); every row's arithmetic is sequential, so the result does not
// depend on the thread count.
// Tested by tests/layer_norm_test.cpp against F.layer_norm fixtures and a naive double loop.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/layer_norm/layer_norm.h"

namespace diffrt {

void layer_norm_ref(const LayerNormParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("layer_norm_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.rows >= 0 && p.c > 0, ErrorCode::Internal,
                 "layer_norm_ref: bad shape rows=" + std::to_string(p.rows) + " c=" + std::to_string(p.c));
  DIFFRT_REQUIRE(p.eps >= 0.0f && std::isfinite(p.eps), ErrorCode::Internal,
                 "layer_norm_ref: eps must be finite and >= 0");
  uint64_t count = 0;
  DIFFRT_REQUIRE(mul_ok(static_cast<uint64_t>(p.rows), static_cast<uint64_t>(p.c) * sizeof(float), &count),
                 ErrorCode::Internal, "layer_norm_ref: rows * c overflows");
  DIFFRT_REQUIRE((p.shift == nullptr) == (p.scale == nullptr), ErrorCode::Internal,
                 "layer_norm_ref: shift and scale come together");
  const bool mod = p.shift != nullptr;
  DIFFRT_REQUIRE(!mod || (p.mod_ld >= p.c && p.rows_per_sample >= 1 && p.rows % p.rows_per_sample == 0),
                 ErrorCode::Internal, "layer_norm_ref: bad modulation layout");
  if (p.rows == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::Internal, "layer_norm_ref: null x or y");
  const float* shift = static_cast<const float*>(p.shift);  // [samples, mod_ld] or null
  const float* scale = static_cast<const float*>(p.scale);  // [samples, mod_ld] or null
  const float* x = static_cast<const float*>(p.x);          // x: [rows, C]
  float* y = static_cast<float*>(p.y);                      // y: [rows, C]
  const float* gamma = static_cast<const float*>(p.gamma);  // [C] or null
  const float* beta = static_cast<const float*>(p.beta);    // [C] or null
  const int C = p.c;
  const double eps = p.eps;
#pragma omp parallel for schedule(static) if (p.rows * C > 32768 && !omp_in_parallel())
  for (long long r = 0; r < p.rows; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += xr[c];
    const double mean = s / C;
    double ss = 0.0;
    for (int c = 0; c < C; ++c) {
      const double d = static_cast<double>(xr[c]) - mean;
      ss += d * d;
    }
    const double rstd = 1.0 / std::sqrt(ss / C + eps);
    const long long smp = mod ? r / p.rows_per_sample : 0;
    const float* shr = mod ? shift + smp * p.mod_ld : nullptr;
    const float* scr = mod ? scale + smp * p.mod_ld : nullptr;
    for (int c = 0; c < C; ++c) {
      double v = (static_cast<double>(xr[c]) - mean) * rstd;
      if (gamma) v *= gamma[c];
      if (beta) v += beta[c];
      float f = static_cast<float>(v);
      if (mod) {
        const float one_plus = 1.0f + scr[c];
        const float scaled = f * one_plus;
        f = scaled + shr[c];
      }
      yr[c] = f;
    }
  }
}

}  // namespace diffrt
