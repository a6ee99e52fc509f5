// DiT's unpatchify (diffusers Transformer2DModel, patched input): every token's p*p*C outputs become a p x p
// block of C-channel pixels. NHWC in and out:
//   y[n, i*p + u, j*p + v, c] = x[n, i, j, (u*p + v)*C + c]
// i.e. x [N, gh, gw, p*p*C] (the token sequence [N, gh*gw, p*p*C] of proj_out_2, token i*gw + j) ->
// y [N, gh*p, gw*p, C]; diffusers' reshape(-1, h, w, p, p, C) + einsum("nhwpqc->nchpwq") in NCHW terms.
// diffusers takes h = w = int(sqrt(gh*gw)), so it is only right for square grids (a 4x16 latent comes back 8x8);
// this op uses the true gh x gw, which equals diffusers' result whenever diffusers' is well defined.
// A pure permutation: exact in every dtype.
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct UnpatchifyParams {
  const void* x = nullptr;  // x: [N, gh, gw, p*p*C] (dtype)
  void* y = nullptr;        // y: [N, gh*p, gw*p, C] (dtype); must not overlap x
  int n = 0, gh = 0, gw = 0, patch = 1, c = 0;
  DType dtype = DType::F32;
};

void unpatchify_ref(const UnpatchifyParams& p);  // CPU reference; dtype must be F32
void unpatchify_cuda(const UnpatchifyParams& p, cudaStream_t stream);

}  // namespace diffrt
