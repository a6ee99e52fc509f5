// LayerNorm over the last (channel) dimension, torch.nn.LayerNorm semantics:
//   y[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * gamma[c] + beta[c]
// mean_r / var_r: mean and biased variance of row r over its C channels. Statistics are fp32 on the GPU
// (double in the CPU reference). Used by the transformer blocks of SD's UNet2DConditionModel (norm1/2/3 of
// BasicTransformerBlock over [N*HW, C] tokens) and the CLIP text encoder.
// adaLN modulation (DiT's AdaLayerNormZero / norm3 / norm_out), when shift and scale are given:
//   y[r, c] = LN(x)[r, c] * (1 + scale[s, c]) + shift[s, c],   s = r / rows_per_sample (the sample of row r)
// with LN(x) as above rounded to fp32 first (diffusers computes norm(x) * (1 + scale) + shift as three fp32 ops).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>

#include "base/dtype.h"

namespace diffrt {

struct LayerNormParams {
  const void* x = nullptr;      // x: [rows, C]  (dtype), rows contiguous
  void* y = nullptr;            // y: [rows, C]  (dtype); may alias x exactly (no partial overlap)
  const void* gamma = nullptr;  // [C] (dtype); null = 1 (nn.LayerNorm(elementwise_affine=False))
  const void* beta = nullptr;   // [C] (dtype); null = 0
  long long rows = 0;           // 0 is a no-op
  int c = 0;                    // >= 1
  float eps = 1e-5f;            // >= 0, finite
  // Modulation (both or neither): row views [samples, mod_ld] of a per-sample vector, already offset to the
  // slice, e.g. DiT's adaLN output [N, 6C] with shift at +0 and scale at +C. dtype as x.
  const void* shift = nullptr;
  const void* scale = nullptr;
  long long mod_ld = 0;           // row stride of shift/scale (elements), >= C
  long long rows_per_sample = 1;  // rows / samples (tokens per sample); rows must be a multiple
  DType dtype = DType::F32;
};

void layer_norm_ref(const LayerNormParams& p);  // CPU reference; dtype must be F32
void layer_norm_cuda(const LayerNormParams& p, cudaStream_t stream);

// How layer_norm_cuda launches a given call (a function of the shape, dtype and pointer alignment only;
// exposed so the tests can prove every path is exercised and the benchmark can name the path it timed).
enum class LayerNormPath : uint8_t {
  Warp,      // one warp per row, row held in registers (C <= 1024)
  Block,     // one block per row, row held in registers (up to 512 threads x 8 vectors)
  Streamed,  // one block per row, row re-read from global/L2 for each pass (larger rows)
};
struct LayerNormLaunch {
  LayerNormPath path = LayerNormPath::Warp;
  int vec = 1;              // elements per access: 16 bytes (4 fp32 / 8 fp16) or 1
  int vecs_per_thread = 1;  // register-cached vectors per thread (Warp, Block)
  int threads_per_row = 32;
  int rows_per_block = 1;
};
// Vector width: 16 bytes when C (and mod_ld) are multiples of it and x, y, gamma, beta (shift, scale) are all
// 16-byte aligned, else 1.
// Path: Warp when C <= 1024 (and the row fits 8 vectors per lane); else Block while the row fits 512
// threads x 8 vectors (fewest vectors per thread that keeps the block at <= 256 threads, else 8); else
// Streamed. Pure host logic: no device query, so a planner may call it too.
inline LayerNormLaunch layer_norm_cuda_launch(const LayerNormParams& p) {
  LayerNormLaunch l;
  const int full = int(16 / dtype_size(p.dtype));
  auto aligned16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15u) == 0; };
  const bool wide = p.c > 0 && p.c % full == 0 && aligned16(p.x) && aligned16(p.y) && aligned16(p.gamma) &&
                    aligned16(p.beta) && aligned16(p.shift) && aligned16(p.scale) && p.mod_ld % full == 0;
  l.vec = wide ? full : 1;
  const int nvec = p.c / l.vec;
  if (p.c <= 1024 && nvec <= 32 * 8) {
    l.path = LayerNormPath::Warp;
    l.threads_per_row = 32;
    l.rows_per_block = 4;
    l.vecs_per_thread = nvec <= 32 ? 1 : nvec <= 64 ? 2 : nvec <= 128 ? 4 : 8;
  } else if (nvec <= 512 * 8) {
    l.path = LayerNormPath::Block;
    l.vecs_per_thread = 8;
    for (int v : {1, 2, 4})
      if ((nvec + v - 1) / v <= 256) { l.vecs_per_thread = v; break; }
    l.threads_per_row = ((nvec + l.vecs_per_thread - 1) / l.vecs_per_thread + 31) / 32 * 32;
  } else {
    l.path = LayerNormPath::Streamed;
    l.vecs_per_thread = 0;
    l.threads_per_row = 512;
  }
  return l;
}
inline const char* layer_norm_path_name(LayerNormPath path) {
  switch (path) {
    case LayerNormPath::Warp: return "warp";
    case LayerNormPath::Block: return "block";
    case LayerNormPath::Streamed: return "streamed";
  }
  return "?";
}

}  // namespace diffrt
