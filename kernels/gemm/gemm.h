// Linear layer: y[m, n] = (sum_k act(x[m, k]) * w[n, k] + bias[n] + residual[m, n]) * out_scale,
// act = SiLU when silu_input (ResnetBlock2D's time_emb_proj(SiLU(temb))), identity otherwise.
// Gated (DiT's adaLN-Zero residual, when gate is set): y[m, n] = residual[m, n] + gate[s, n] * t[m, n] with
// t = act(x) w^T + bias rounded to the storage type first (diffusers: attn_output = gate * attn_output;
// hidden_states = attn_output + hidden_states) and s = m / rows_per_gate (the sample of row m).
// Also the blocked fp32 GEMM the CPU convolution uses.
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct LinearParams {
  const void* x = nullptr;         // x: [M, K], rows contiguous
  const void* w = nullptr;         // w: [N, K]
  const void* bias = nullptr;      // [N] or null
  const void* residual = nullptr;  // [M, N] or null
  void* y = nullptr;               // y: [M, N]
  int m = 0, n = 0, k = 0;
  bool silu_input = false;
  float out_scale = 1.0f;
  const void* gate = nullptr;      // [samples, gate_ld] row view (already offset to the slice) or null; needs a
                                   // residual that is not y, and out_scale 1
  long long gate_ld = 0;           // >= N
  long long rows_per_gate = 1;     // M / samples; M must be a multiple
  DType dtype = DType::F32;
};

void linear_ref(const LinearParams& p);  // dtype must be F32

// C[M,N] = A[M,K] * B[N,K]^T (+ C if accumulate), all row-major fp32, OpenMP-parallel.
void gemm_nt_f32(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                 int ldc, bool accumulate);

}  // namespace diffrt
