// CPU references of the layout/elementwise ops, NHWC, fp32:
//   upsample2x: y[n, oy, ox, c] = x[n, oy/2, ox/2, c]           (nearest, diffusers Upsample2D)
//   concat:     y[p, :] = [a[p, 0:Ca], b[p, 0:Cb]]               (torch.cat([h, skip], dim=1) in NHWC)
//   affine:     y[i] = x[i] * scale + shift                       (center_input_sample: 2x - 1)
//   geglu:      y[r, j] = x[r, j] * gelu(x[r, F + j])             (diffusers GEGLU; exact erf GELU in
//               double as g * erfc(-g / sqrt 2) / 2, which keeps full relative accuracy for g << 0)
// Tested by tests/ops_ref_test.cpp against direct index formulas on odd shapes; geglu by
// tests/geglu_test.cpp against diffusers GEGLU fixtures and a naive double loop.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/elementwise/elementwise.h"

namespace diffrt {
namespace {
void require_f32(DType t, const char* op) {
  DIFFRT_REQUIRE(t == DType::F32, ErrorCode::Internal,
                 std::string(op) + ": dtype must be fp32, got " + dtype_name(t));
}
}  // namespace

void upsample2x_ref(const Upsample2xParams& p) {
  require_f32(p.dtype, "upsample2x_ref");
  DIFFRT_REQUIRE(p.n >= 0 && p.h >= 0 && p.w >= 0 && p.c >= 0, ErrorCode::Internal, "upsample2x_ref: bad shape");
  if (static_cast<long long>(p.n) * p.h * p.w * p.c == 0) return;
  DIFFRT_REQUIRE(p.x && p.y && p.x != p.y, ErrorCode::Internal, "upsample2x_ref: null or aliased x/y");
  const float* x = static_cast<const float*>(p.x);  // x: [N, H, W, C]
  float* y = static_cast<float*>(p.y);              // y: [N, 2H, 2W, C]
  const int H = p.h, W = p.w, C = p.c;
  const size_t px = static_cast<size_t>(C) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < p.n; ++n) {
    for (int oy = 0; oy < 2 * H; ++oy) {
      const float* src = x + (static_cast<size_t>(n) * H + oy / 2) * W * C;
      float* dst = y + (static_cast<size_t>(n) * 2 * H + oy) * 2 * W * C;
      for (int ox = 0; ox < 2 * W; ++ox) std::memcpy(dst + static_cast<size_t>(ox) * C, src + static_cast<size_t>(ox / 2) * C, px);
    }
  }
}

void concat_ref(const ConcatParams& p) {
  require_f32(p.dtype, "concat_ref");
  DIFFRT_REQUIRE(p.pixels >= 0 && p.ca >= 0 && p.cb >= 0, ErrorCode::Internal, "concat_ref: bad shape");
  if (p.pixels == 0 || p.ca + p.cb == 0) return;
  DIFFRT_REQUIRE(p.y && (p.ca == 0 || p.a) && (p.cb == 0 || p.b) && p.y != p.a && p.y != p.b,
                 ErrorCode::Internal, "concat_ref: null or aliased pointer");
  const float* a = static_cast<const float*>(p.a);  // a: [P, Ca]
  const float* b = static_cast<const float*>(p.b);  // b: [P, Cb]
  float* y = static_cast<float*>(p.y);              // y: [P, Ca + Cb]
  const int ca = p.ca, cb = p.cb, cy = ca + cb;
#pragma omp parallel for schedule(static) if (p.pixels * cy > 65536)
  for (long long i = 0; i < p.pixels; ++i) {
    float* dst = y + i * cy;
    if (ca) std::memcpy(dst, a + i * ca, static_cast<size_t>(ca) * sizeof(float));
    if (cb) std::memcpy(dst + ca, b + i * cb, static_cast<size_t>(cb) * sizeof(float));
  }
}

void affine_ref(const AffineParams& p) {
  require_f32(p.dtype, "affine_ref");
  DIFFRT_REQUIRE(p.count >= 0, ErrorCode::Internal, "affine_ref: negative count");
  if (p.count == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::Internal, "affine_ref: null pointer");
  const float* x = static_cast<const float*>(p.x);  // x: [count]
  float* y = static_cast<float*>(p.y);              // y: [count]; may alias x
  const float s = p.scale, t = p.shift;
#pragma omp parallel for schedule(static) if (p.count > 65536)
  for (long long i = 0; i < p.count; ++i) y[i] = x[i] * s + t;
}

void geglu_ref(const GegluParams& p) {
  require_f32(p.dtype, "geglu_ref");
  DIFFRT_REQUIRE(p.rows >= 0 && p.f > 0 && p.f <= (1 << 30), ErrorCode::Internal,
                 "geglu_ref: bad shape rows=" + std::to_string(p.rows) + " f=" + std::to_string(p.f));
  uint64_t bytes = 0;
  DIFFRT_REQUIRE(mul_ok(static_cast<uint64_t>(p.rows), static_cast<uint64_t>(p.f) * 2 * sizeof(float), &bytes),
                 ErrorCode::Internal, "geglu_ref: rows * 2F overflows");
  if (p.rows == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::Internal, "geglu_ref: null x or y");
  const float* x = static_cast<const float*>(p.x);  // x: [rows, 2F] = [hidden | gate]
  float* y = static_cast<float*>(p.y);              // y: [rows, F]
  const long long F = p.f;
  const uintptr_t xa = reinterpret_cast<uintptr_t>(x), ya = reinterpret_cast<uintptr_t>(y);
  DIFFRT_REQUIRE(ya + bytes / 2 <= xa || xa + bytes <= ya, ErrorCode::Internal, "geglu_ref: y overlaps x");
  const double k = 1.0 / std::sqrt(2.0);
#pragma omp parallel for schedule(static) if (p.rows * F > 65536)
  for (long long r = 0; r < p.rows; ++r) {
    const float* h = x + r * 2 * F;
    const float* g = h + F;
    float* yr = y + r * F;
    for (long long j = 0; j < F; ++j) {
      const double gd = g[j];
      yr[j] = static_cast<float>(static_cast<double>(h[j]) * (0.5 * gd * std::erfc(-gd * k)));
    }
  }
}

}  // namespace diffrt
