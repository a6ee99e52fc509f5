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

// How attention_cuda runs a call (pure host logic of the shape and dtype; the launcher uses it, tests prove which
// path a model's shapes take without a GPU, the benchmark names the path it timed).
struct AttentionLaunch {
  bool tensor_cores = false;  // fp16/bf16: mma.sync m16n8k16 with fp32 accumulation; fp32: exact SIMT kernel
  int head_dim_bucket = 0;    // the compiled head dim the call runs at (d zero-padded up to it in shared memory)
  int kv_tile = 0;            // keys per K/V tile
  int out_chunks = 1;         // blocks per (query tile, head) along the output columns (d > 160: 128 columns each)
};
// Tensor-core head-dim buckets: 32, 48, 64, 80, 128, 160, 256, 512 (multiples of 16, the mma k). DiT's d = 72 runs
// in the 80 bucket: 72 of 80 columns useful (90%); SD's 40 in 48, 80 and 160 exactly.
inline int attention_mma_bucket(int d) {
  return d <= 32 ? 32 : d <= 48 ? 48 : d <= 64 ? 64 : d <= 80 ? 80 : d <= 128 ? 128 : d <= 160 ? 160 : d <= 256 ? 256 : 512;
}
// fp32 SIMT buckets: multiples of 32 (a lane owns d/32 output columns).
inline int attention_f32_bucket(int d) {
  return d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : d <= 128 ? 128 : d <= 160 ? 160 : d <= 256 ? 256 : 512;
}
inline AttentionLaunch attention_cuda_launch(const AttentionParams& p) {
  AttentionLaunch l;
  l.tensor_cores = p.dtype != DType::F32;
  if (l.tensor_cores) {
    l.head_dim_bucket = attention_mma_bucket(p.head_dim);
    l.kv_tile = l.head_dim_bucket <= 128 ? 64 : 32;
    const int out_cols = l.head_dim_bucket <= 160 ? l.head_dim_bucket : 128;
    l.out_chunks = (p.head_dim + out_cols - 1) / out_cols;
  } else {
    l.head_dim_bucket = attention_f32_bucket(p.head_dim);
    l.kv_tile = 32;
  }
  return l;
}

}  // namespace diffrt
