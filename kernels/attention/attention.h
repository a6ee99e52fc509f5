// Multi-head scaled-dot-product attention, softmax over keys:
//   o[b, i, h*d:(h+1)*d] = sum_j softmax_j(scale * q_i . k_j) v_j
// q/k/v/o are row-strided views so a fused QKV projection output [B, L, 3C] is read in place.
// causal: key j is masked for query i when j > i (CLIP's text encoder; top-left aligned, so query i
// always sees key 0 and no row is empty). Masked keys get probability exactly 0.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "base/dtype.h"
#include "kernels/attention/attention_tiles.h"

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

// attention_cuda with the tiles chosen for an opt-in shared-memory limit of min(smem_optin, the device's): tests
// force the small tiles of 99 KB GPUs (kSmemOptinSm86) on a larger GPU with it. Not for production use.
void attention_cuda_with_smem_limit(const AttentionParams& p, cudaStream_t stream, size_t smem_optin);

// How attention_cuda runs a call (pure host logic of the shape, dtype and the device's opt-in shared memory per
// block; the launcher uses it, tests prove which path a model's shapes take without a GPU, the benchmark names the
// path it timed). The default limit is sm_90's (H100/H200, where benchmarks run); on sm_86/sm_89 (99 KB) head dim
// 512 runs smaller tiles (attention_tiles.h).
struct AttentionLaunch {
  bool tensor_cores = false;  // fp16/bf16: mma.sync m16n8k16 with fp32 accumulation; fp32: exact SIMT kernel
  int head_dim_bucket = 0;    // the compiled head dim the call runs at (d zero-padded up to it in shared memory)
  int kv_tile = 0;            // keys per K/V tile
  int out_chunks = 1;         // blocks per (query tile, head) along the output columns (d > 160: 128 columns each)
  bool kv_shared = false;     // fp32: K and V of a tile share one shared-memory buffer
  size_t smem_bytes = 0;      // dynamic shared memory per block
};
inline AttentionLaunch attention_cuda_launch(const AttentionParams& p, size_t smem_optin = kSmemOptinSm90) {
  const AttentionTile t = attention_tile(p.head_dim, p.dtype, smem_optin);
  AttentionLaunch l;
  l.tensor_cores = p.dtype != DType::F32;
  l.head_dim_bucket = t.head_dim_bucket;
  l.kv_tile = t.kv_tile;
  l.kv_shared = t.kv_shared;
  l.smem_bytes = t.smem_bytes;
  if (l.tensor_cores) {
    const int out_cols = attention_mma_out_cols(t.head_dim_bucket);
    l.out_chunks = (p.head_dim + out_cols - 1) / out_cols;
  }
  return l;
}

}  // namespace diffrt
