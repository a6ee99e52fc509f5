// Multi-head scaled-dot-product attention, softmax over keys:
//   o[b, i, h*d:(h+1)*d] = sum_j softmax_j(scale * q_i . k_j) v_j
// q/k/v/o are row-strided views so a fused QKV projection output [B, L, 3C] is read in place.
// causal: key j is masked for query i when j > i (CLIP's text encoder; top-left aligned, so query i
// always sees key 0 and no row is empty). Masked keys get probability exactly 0.
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

namespace diffrt {

struct AttentionParams {
  const void* q = nullptr;  // q: [B, Lq, ldq], head h at columns [h*D, (h+1)*D)
  const void* k = nullptr;  // k: [B, Lkv, ldk]
  const void* v = nullptr;  // v: [B, Lkv, ldv]
  void* o = nullptr;        // o: [B, Lq, ldo]
  int batch = 0, heads = 0, lq = 0, lkv = 0, head_dim = 0;
  int ldq = 0, ldk = 0, ldv = 0, ldo = 0;  // row strides in elements
  float scale = 1.0f;
  bool causal = false;  // mask keys j > i
  DType dtype = DType::F32;
};

void attention_ref(const AttentionParams& p);  // CPU reference; dtype must be F32
void attention_cuda(const AttentionParams& p, cudaStream_t stream);

}  // namespace diffrt
