// DiT patch embedding (diffusers PatchEmbed with layer_norm=False, flatten=True): a stride-p, kernel-p convolution
// that turns every p x p patch into one token, plus the fixed 2-D sin-cos position table:
//   y[n, i, j, d] = bias[d] + sum_{u,v,c} x[n, i*p+u, j*p+v, c] * w[d, u, v, c]  (+ pos(i, j, d) when pos_embed)
// Layouts: x NHWC [N, H, W, Cin] (H, W multiples of p); w [D, p, p, Cin] (KRSC, as conv weights are stored);
// y [N, H/p, W/p, D] = the token sequence [N, gh*gw, D] with token i*gw + j (diffusers' flatten(2).transpose(1,2)).
// Position table (diffusers get_2d_sincos_pos_embed, numpy < 2 semantics; D % 4 == 0), for a gh x gw grid:
//   col[j] = f32(f32(j) / f32(gw / base_size)) / f32(interpolation_scale)    (float32 numpy arithmetic;
//   row[i] = same with gh                                                     gw / base_size in double)
//   omega[k] = 1 / 10000^(k / (D/4))  (float64), k < D/4
//   emb1d(pos) = [sin(pos*omega) | cos(pos*omega)]   (D/2 values, float64 from the float32 pos)
//   pos(i, j) = [emb1d(col[j]) | emb1d(row[i])]       (the COLUMN (w) coordinate fills the first half)
// rounded to fp32 once. diffusers builds the table for the config grid (gh = gw = base_size) at init and rebuilds it
// for any other input grid with the same base_size/interpolation_scale; the formula above covers both.
// The sum: the conv result (fp32 on the GPU, double then fp32 in the reference) + the fp32 table, one rounding to
// the storage type (diffusers: (latent + pos_embed).to(latent.dtype)).
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct PatchEmbedParams {
  const void* x = nullptr;     // x: [N, H, W, Cin] (dtype)
  const void* w = nullptr;     // w: [D, p, p, Cin] (dtype)
  const void* bias = nullptr;  // [D] (dtype) or null
  void* y = nullptr;           // y: [N, H/p, W/p, D] (dtype); must not overlap x, w, bias
  int n = 0, h = 0, w_in = 0, cin = 0, dim = 0, patch = 1;
  bool pos_embed = true;
  int base_size = 1;                 // config sample_size / patch
  float interpolation_scale = 1.0f;  // > 0
  DType dtype = DType::F32;
};

// One entry of the position table for a gh x gw grid (the formula above), before rounding to fp32.
double pos_embed_value(int i, int j, int d, int gh, int gw, int dim, int base_size, float interpolation_scale);
// The whole table [gh*gw, dim] in fp32 (what diffusers registers / recomputes).
void pos_embed_table_ref(int gh, int gw, int dim, int base_size, float interpolation_scale, float* table);

void patch_embed_ref(const PatchEmbedParams& p);  // CPU reference; dtype must be F32
void patch_embed_cuda(const PatchEmbedParams& p, cudaStream_t stream);

}  // namespace diffrt
