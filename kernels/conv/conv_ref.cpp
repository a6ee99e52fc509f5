// CPU reference 2-D convolution (cross-correlation), NHWC activations, KRSC filters:
//   y[n, oy, ox, co] = (bias[co] + sum_{ky,kx,ci} x[n, oy*s - pt + ky, ox*s - pl + kx, ci] * w[co, ky, kx, ci]
//                       + residual[n, oy, ox, co]) * out_scale
// Method: im2col + gemm_nt_f32. Output pixels are flattened over (n, oy, ox) into GEMM rows; a
// patch row is (ky, kx, ci) -- exactly one KRSC filter row -- so Y[rows, Cout] = Patches * W^T with
// W = [Cout, KH*KW*Cin] used in place. Out-of-image taps (padding, incl. the asymmetric
// pad_bottom/pad_right of diffusers' downsample_padding=0) are zeros in the patch.
// Rows are processed in chunks so the scratch stays bounded (conv2d_ref_scratch_floats).
// 1x1 / stride 1 / unpadded convs skip im2col: the input already is the patch matrix.
// Tested by tests/ops_ref_test.cpp against torch F.conv2d fixtures (3x3 p1, 1x1, 3x3 s2 p1, and
// F.pad(0,1,0,1) + 3x3 s2) and against a naive double-precision loop over awkward shapes.
// Benchmarked by bench/cpu_ops_bench.cpp (CIFAR 32x32x128 -> 128 3x3).
#include <algorithm>
#include <cstring>
#include <string>

#include "base/error.h"
#include "kernels/conv/conv.h"
#include "kernels/gemm/gemm.h"

namespace diffrt {
namespace {

struct ConvGeom {
  int ho = 0, wo = 0;
  long long rows = 0;  // N * Ho * Wo
  int kdim = 0;        // KH * KW * Cin
  bool direct = false; // 1x1, stride 1, no padding: no im2col
  long long chunk = 0; // GEMM rows per im2col chunk
};

ConvGeom geometry(const Conv2dParams& p) {
  DIFFRT_REQUIRE(p.n >= 0 && p.h > 0 && p.w_in > 0 && p.cin > 0 && p.cout > 0 && p.kh > 0 && p.kw > 0 &&
                     p.stride > 0 && p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0,
                 ErrorCode::Internal, "conv2d_ref: invalid shape");
  ConvGeom g;
  g.ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  g.wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  DIFFRT_REQUIRE(p.h + p.pad_top + p.pad_bottom >= p.kh && p.w_in + p.pad_left + p.pad_right >= p.kw,
                 ErrorCode::Internal, "conv2d_ref: kernel larger than padded input");
  g.rows = static_cast<long long>(p.n) * g.ho * g.wo;
  g.kdim = p.kh * p.kw * p.cin;
  g.direct = p.kh == 1 && p.kw == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_left == 0 &&
             p.pad_bottom == 0 && p.pad_right == 0;
  // ~16 MiB of patches per chunk, but at least a few GEMM row blocks and at most 4096 rows.
  const long long target = std::max<long long>(288, (4ll << 20) / g.kdim);
  g.chunk = std::min<long long>({g.rows, 4096, target});
  return g;
}

// Patch rows [r0, r0 + count) of the flattened output grid into cols: [count, KH*KW*Cin].
void im2col(const Conv2dParams& p, const ConvGeom& g, const float* x, long long r0, long long count,
            float* cols) {
  const long long per_image = static_cast<long long>(g.ho) * g.wo;
  const size_t row_bytes = static_cast<size_t>(p.cin) * sizeof(float);
#pragma omp parallel for schedule(static) if (count * g.kdim > 32768)
  for (long long r = 0; r < count; ++r) {
    const long long gr = r0 + r;
    const int n = static_cast<int>(gr / per_image);
    const int rem = static_cast<int>(gr % per_image);
    const int oy = rem / g.wo, ox = rem % g.wo;
    float* dst = cols + r * g.kdim;  // dst: [KH, KW, Cin]
    for (int ky = 0; ky < p.kh; ++ky) {
      const int iy = oy * p.stride - p.pad_top + ky;
      for (int kx = 0; kx < p.kw; ++kx, dst += p.cin) {
        const int ix = ox * p.stride - p.pad_left + kx;
        if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w_in) {
          std::memset(dst, 0, row_bytes);
        } else {
          std::memcpy(dst, x + ((static_cast<size_t>(n) * p.h + iy) * p.w_in + ix) * p.cin, row_bytes);
        }
      }
    }
  }
}

}  // namespace

size_t conv2d_ref_scratch_floats(const Conv2dParams& p) {
  const ConvGeom g = geometry(p);
  return g.direct ? 0 : static_cast<size_t>(g.chunk) * g.kdim;
}

void conv2d_ref(const Conv2dParams& p, float* scratch) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("conv2d_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::Internal, "conv2d_ref: null x/w/y");
  DIFFRT_REQUIRE(p.x != p.y, ErrorCode::Internal, "conv2d_ref: y must not alias x");
  const ConvGeom g = geometry(p);
  if (g.rows == 0) return;
  DIFFRT_REQUIRE(g.direct || scratch, ErrorCode::Internal, "conv2d_ref: scratch required");
  const float* x = static_cast<const float*>(p.x);           // x: [N, H, W, Cin]
  const float* w = static_cast<const float*>(p.w);           // w: [Cout, KH, KW, Cin] = [Cout, kdim]
  const float* bias = static_cast<const float*>(p.bias);     // [Cout] or null
  const float* res = static_cast<const float*>(p.residual);  // [N, Ho, Wo, Cout] or null
  float* y = static_cast<float*>(p.y);                       // y: [N, Ho, Wo, Cout]
  const int cout = p.cout;
  // A residual stored in y itself is accumulated by the GEMM; any other one is added afterwards.
  const bool res_in_place = res == y;
  const bool add_res = res && !res_in_place;

  for (long long r0 = 0; r0 < g.rows; r0 += g.chunk) {
    const int count = static_cast<int>(std::min(g.chunk, g.rows - r0));
    const float* a = nullptr;  // patches: [count, kdim]
    if (g.direct) {
      a = x + static_cast<size_t>(r0) * p.cin;
    } else {
      im2col(p, g, x, r0, count, scratch);
      a = scratch;
    }
    float* yc = y + static_cast<size_t>(r0) * cout;  // yc: [count, Cout]
    gemm_nt_f32(count, cout, g.kdim, a, g.kdim, w, g.kdim, yc, cout, res_in_place);
    if (!bias && !add_res && p.out_scale == 1.0f) continue;
    const float s = p.out_scale;
    const float* rc = add_res ? res + static_cast<size_t>(r0) * cout : nullptr;
#pragma omp parallel for schedule(static) if (static_cast<long long>(count) * cout > 65536)
    for (int r = 0; r < count; ++r) {
      float* yr = yc + static_cast<size_t>(r) * cout;
      const float* rr = rc ? rc + static_cast<size_t>(r) * cout : nullptr;
      for (int c = 0; c < cout; ++c) {
        float v = yr[c];
        if (bias) v += bias[c];
        if (rr) v += rr[c];
        yr[c] = v * s;
      }
    }
  }
}

}  // namespace diffrt
