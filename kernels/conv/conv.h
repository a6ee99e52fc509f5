// 2-D convolution (cross-correlation) over NHWC with a KRSC filter:
//   y[n, oy, ox, co] = (bias[co] + sum_{ky,kx,ci} x[n, oy*s-pt+ky, ox*s-pl+kx, ci] * w[co, ky, kx, ci]
//                       + residual[n, oy, ox, co]) * out_scale
// Asymmetric padding expresses diffusers' downsample_padding=0 (pad right/bottom by 1).
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct Conv2dParams {
  const void* x = nullptr;         // x: [N, H, W, Cin]
  const void* w = nullptr;         // w: [Cout, KH, KW, Cin]
  const void* bias = nullptr;      // [Cout] or null
  const void* residual = nullptr;  // [N, Ho, Wo, Cout] or null
  void* y = nullptr;               // y: [N, Ho, Wo, Cout]; must not alias x
  int n = 0, h = 0, w_in = 0, cin = 0, cout = 0, kh = 1, kw = 1, stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  float out_scale = 1.0f;
  DType dtype = DType::F32;
};

inline int conv_out_dim(int in, int k, int stride, int pad_lo, int pad_hi) {
  return (in + pad_lo + pad_hi - k) / stride + 1;
}

// CPU reference: im2col + blocked GEMM, OpenMP over both cores. `scratch` must hold
// conv2d_ref_scratch_floats(p) floats.
size_t conv2d_ref_scratch_floats(const Conv2dParams& p);
void conv2d_ref(const Conv2dParams& p, float* scratch);

}  // namespace diffrt
