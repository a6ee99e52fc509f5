// Layout/elementwise ops of the UNet graph, NHWC.
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct Upsample2xParams {
  const void* x = nullptr;  // x: [N, H, W, C]
  void* y = nullptr;        // y: [N, 2H, 2W, C], y[n, oy, ox] = x[n, oy/2, ox/2]
  int n = 0, h = 0, w = 0, c = 0;
  DType dtype = DType::F32;
};
struct ConcatParams {
  const void* a = nullptr;  // a: [P, Ca]
  const void* b = nullptr;  // b: [P, Cb]
  void* y = nullptr;        // y: [P, Ca + Cb], a's channels first (diffusers' cat([h, skip]))
  long long pixels = 0;
  int ca = 0, cb = 0;
  DType dtype = DType::F32;
};
struct AffineParams {
  const void* x = nullptr;  // y = x * scale + shift (UNet2DModel center_input_sample: 2x - 1)
  void* y = nullptr;
  long long count = 0;
  float scale = 1.0f, shift = 0.0f;
  DType dtype = DType::F32;
};
// GEGLU activation (diffusers GEGLU after its projection: hidden, gate = proj(x).chunk(2, -1);
// hidden * F.gelu(gate)), exact erf GELU:  y[r, j] = x[r, j] * gelu(x[r, F + j]),
// gelu(g) = g * Phi(g) = 0.5 g (1 + erf(g / sqrt 2)).
struct GegluParams {
  const void* x = nullptr;  // x: [rows, 2F] = [hidden | gate]
  void* y = nullptr;        // y: [rows, F]; must not overlap x
  long long rows = 0;       // 0 is a no-op
  int f = 0;                // F >= 1
  DType dtype = DType::F32;
};

void upsample2x_ref(const Upsample2xParams& p);
void concat_ref(const ConcatParams& p);
void affine_ref(const AffineParams& p);
void geglu_ref(const GegluParams& p);
void upsample2x_cuda(const Upsample2xParams& p, cudaStream_t stream);
void concat_cuda(const ConcatParams& p, cudaStream_t stream);
void affine_cuda(const AffineParams& p, cudaStream_t stream);
void geglu_cuda(const GegluParams& p, cudaStream_t stream);

}  // namespace diffrt
