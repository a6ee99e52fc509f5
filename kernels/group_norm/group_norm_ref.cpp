// CPU reference GroupNorm over NHWC with the UNet fusions:
//   v = x + emb[n, c]            (AddBeforeNorm; the add is fp32, as diffusers' h + temb)
//   v = x                        (None, ScaleShift)
//   mu, var = mean / biased variance of v over (HW, C/G channels of group g), per sample n, in double
//   y = (v - mu) / sqrt(var + eps) * gamma[c] + beta[c]            (double, rounded to fp32)
//   y = y * (1 + emb[n, c]) + emb[n, C + c]                         (ScaleShift, fp32)
//   y = y * sigmoid(y)                                              (silu, fp32)
// Layout: x, y [N, HW, C], group g owns channels [g*C/G, (g+1)*C/G). y may alias x (each element is
// read before it is written, and statistics are complete before any write).
// Method: per sample, per-channel sums over fixed pixel chunks (OpenMP, double; deterministic),
// reduced to group mean,
// then a second pass for the centred sum of squares (two-pass: exact even for large means), then
// the elementwise pass.
// Tested by tests/ops_ref_test.cpp against torch.nn.GroupNorm (+F.silu, + add-before-norm and
// scale_shift variants) fixtures and a naive double loop over random shapes.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/group_norm/group_norm.h"

namespace diffrt {
namespace {

// Per-channel sum over pixels of f(v) for one sample, in double. Pixels are cut into fixed chunks
// whose partial sums are added in chunk order, so the result is bit-identical for any thread count
// and schedule (an OpenMP critical/atomic reduction would add in completion order).
template <typename F>
void channel_sums(int hw, int c, F f, std::vector<double>& out, std::vector<double>& partial) {
  constexpr int kChunk = 64;
  const int chunks = (hw + kChunk - 1) / kChunk;
  partial.assign(static_cast<size_t>(chunks) * c, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1 && !omp_in_parallel())
  for (int k = 0; k < chunks; ++k) {
    double* part = partial.data() + static_cast<size_t>(k) * c;
    for (int i = k * kChunk; i < std::min(hw, (k + 1) * kChunk); ++i)
      for (int ch = 0; ch < c; ++ch) part[ch] += f(i, ch);
  }
  std::fill(out.begin(), out.end(), 0.0);
  for (int k = 0; k < chunks; ++k)
    for (int ch = 0; ch < c; ++ch) out[ch] += partial[static_cast<size_t>(k) * c + ch];
}

}  // namespace

void group_norm_ref(const GroupNormParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("group_norm_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n >= 0 && p.hw > 0 && p.c > 0 && p.groups > 0 && p.c % p.groups == 0,
                 ErrorCode::Internal, "group_norm_ref: invalid shape (C must be a multiple of groups)");
  DIFFRT_REQUIRE(p.x && p.y && p.gamma && p.beta, ErrorCode::Internal, "group_norm_ref: null pointer");
  DIFFRT_REQUIRE((p.emb_mode == EmbMode::None) == (p.emb == nullptr), ErrorCode::Internal,
                 "group_norm_ref: emb must be given exactly when emb_mode is not None");
  const int N = p.n, HW = p.hw, C = p.c, G = p.groups, cg = C / G;
  const float* x = static_cast<const float*>(p.x);          // x: [N, HW, C]
  float* y = static_cast<float*>(p.y);                      // y: [N, HW, C]
  const float* gamma = static_cast<const float*>(p.gamma);  // [C]
  const float* beta = static_cast<const float*>(p.beta);    // [C]
  const float* emb = static_cast<const float*>(p.emb);      // [N, C] or [N, 2C]
  const bool add_emb = p.emb_mode == EmbMode::AddBeforeNorm;
  const bool scale_shift = p.emb_mode == EmbMode::ScaleShift;
  const int emb_stride = scale_shift ? 2 * C : C;
  const double count = static_cast<double>(HW) * cg;

  std::vector<double> sums(C), mean(G), rstd(G), partial;
  for (int n = 0; n < N; ++n) {
    const float* xn = x + static_cast<size_t>(n) * HW * C;  // [HW, C]
    float* yn = y + static_cast<size_t>(n) * HW * C;        // [HW, C]
    const float* en = emb ? emb + static_cast<size_t>(n) * emb_stride : nullptr;
    auto val = [&](int i, int ch) -> float {
      const float v = xn[static_cast<size_t>(i) * C + ch];
      return add_emb ? v + en[ch] : v;
    };
    channel_sums(HW, C, [&](int i, int ch) { return static_cast<double>(val(i, ch)); }, sums, partial);
    for (int g = 0; g < G; ++g) {
      double s = 0.0;
      for (int ch = g * cg; ch < (g + 1) * cg; ++ch) s += sums[ch];
      mean[g] = s / count;
    }
    channel_sums(HW, C, [&](int i, int ch) {
      const double d = static_cast<double>(val(i, ch)) - mean[ch / cg];
      return d * d;
    }, sums, partial);
    for (int g = 0; g < G; ++g) {
      double s = 0.0;
      for (int ch = g * cg; ch < (g + 1) * cg; ++ch) s += sums[ch];
      rstd[g] = 1.0 / std::sqrt(s / count + static_cast<double>(p.eps));
    }
#pragma omp parallel for schedule(static) if (static_cast<long long>(HW) * C > 32768 && !omp_in_parallel())
    for (int i = 0; i < HW; ++i) {
      for (int ch = 0; ch < C; ++ch) {
        const int g = ch / cg;
        const double nv = (static_cast<double>(val(i, ch)) - mean[g]) * rstd[g];
        float out = static_cast<float>(nv * gamma[ch] + beta[ch]);
        if (scale_shift) out = out * (1.0f + en[ch]) + en[C + ch];
        if (p.silu) out = out / (1.0f + std::exp(-out));
        yn[static_cast<size_t>(i) * C + ch] = out;
      }
    }
  }
}

}  // namespace diffrt
