// Attention tile choice from a shared-memory limit: pure host logic (no CUDA), so the choice for every GPU class is
// tested on the CPU (tests/attention_tile_test.cpp) and attention.cu launches exactly what it returns.
//
// The kernels (attention.cu) keep a block's Q tile and one K/V tile in dynamic shared memory; at head dim 512 the
// preferred tiles need more than the 99 KB per block that sm_86/sm_89 (RTX 30/40, A10, L4, L40) allow, and the SD
// VAE's mid-block attention is one head of 512. Each bucket therefore has a short list of tiles, preferred first;
// the first that fits the device's opt-in limit (cudaDevAttrMaxSharedMemoryPerBlockOptin) runs:
//  * fp16/bf16 (mma): Q [64][D+8] + K [BK][D+8] + V [BK][DO+8] elements. BK = 64 keys for D <= 128, 32 above;
//    D = 512 falls back to BK = 16 (87,552 B instead of 108,544 B).
//  * fp32 (SIMT): Q [16][D] + K [32][D+1] + V [32][D] floats. D = 512 falls back to one buffer that holds K and
//    then V of a tile (V is fetched after the scores; 98,432 B instead of 163,968 B). The kernel fetches K and V
//    synchronously either way, so sharing costs two block barriers per tile and no overlap.
// Every other bucket's preferred tile fits 99 KB, so on sm_80 / sm_90 every bucket keeps its preferred tile.
#pragma once
#include <cstddef>
#include <string>

#include "base/dtype.h"
#include "base/error.h"

namespace diffrt {

// Opt-in dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin) of the supported GPU classes.
constexpr size_t kSmemOptinSm80 = 166912;  // A100, sm_87 (163 KB)
constexpr size_t kSmemOptinSm86 = 101376;  // sm_86 / sm_89 / sm_120: RTX 30/40/50, A10, L4, L40 (99 KB); the least
constexpr size_t kSmemOptinSm90 = 232448;  // H100/H200, sm_100 (227 KB)

// Tensor-core head-dim buckets: 32, 48, 64, 80, 128, 160, 256, 512 (multiples of 16, the mma k). DiT's d = 72 runs
// in the 80 bucket: 72 of 80 columns useful (90%); SD's 40 in 48, 80 and 160 exactly.
inline int attention_mma_bucket(int d) {
  return d <= 32 ? 32 : d <= 48 ? 48 : d <= 64 ? 64 : d <= 80 ? 80 : d <= 128 ? 128 : d <= 160 ? 160 : d <= 256 ? 256 : 512;
}
// fp32 SIMT buckets: multiples of 32 (a lane owns d/32 output columns).
inline int attention_f32_bucket(int d) {
  return d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : d <= 128 ? 128 : d <= 160 ? 160 : d <= 256 ? 256 : 512;
}
// Output columns per block of the tensor-core kernel (the fp32 output accumulator is capped at 128 columns).
constexpr int attention_mma_out_cols(int bucket) { return bucket <= 160 ? bucket : 128; }

// Dynamic shared memory of one block, in bytes.
constexpr size_t attention_mma_smem(int bucket, int kv_tile, size_t elem_size) {
  return size_t(64 * (bucket + 8) + kv_tile * (bucket + 8) + kv_tile * (attention_mma_out_cols(bucket) + 8)) *
         elem_size;
}
constexpr size_t attention_f32_smem(int bucket, bool kv_shared) {
  return size_t(16 * bucket + 32 * (bucket + 1) + (kv_shared ? 0 : 32 * bucket)) * sizeof(float);
}

struct AttentionTile {
  int head_dim_bucket = 0;  // the compiled head dim (d zero-padded up to it in shared memory)
  int kv_tile = 0;          // keys per K/V tile (BK)
  bool kv_shared = false;   // fp32 only: K and V of a tile share one buffer
  size_t smem_bytes = 0;    // dynamic shared memory per block
};

// The tile attention_cuda runs for head dim d (1..512) and dtype under an opt-in limit of smem_optin bytes per
// block: the preferred tile if it fits, else the bucket's smaller one. Throws Error(Unsupported) naming the bytes
// short when none fits (no supported GPU: every bucket fits in kSmemOptinSm86).
inline AttentionTile attention_tile(int head_dim, DType dtype, size_t smem_optin) {
  DIFFRT_REQUIRE(head_dim >= 1 && head_dim <= 512, ErrorCode::Unsupported,
                 "attention: head_dim " + std::to_string(head_dim) + " outside 1..512");
  AttentionTile t;
  if (dtype == DType::F32) {
    t.head_dim_bucket = attention_f32_bucket(head_dim);
    t.kv_tile = 32;
    t.smem_bytes = attention_f32_smem(t.head_dim_bucket, false);
    if (t.smem_bytes > smem_optin && t.head_dim_bucket == 512) {
      t.kv_shared = true;
      t.smem_bytes = attention_f32_smem(t.head_dim_bucket, true);
    }
  } else {
    const size_t es = dtype_size(dtype);
    t.head_dim_bucket = attention_mma_bucket(head_dim);
    t.kv_tile = t.head_dim_bucket <= 128 ? 64 : 32;
    t.smem_bytes = attention_mma_smem(t.head_dim_bucket, t.kv_tile, es);
    if (t.smem_bytes > smem_optin && t.head_dim_bucket == 512) {
      t.kv_tile = 16;
      t.smem_bytes = attention_mma_smem(t.head_dim_bucket, t.kv_tile, es);
    }
  }
  DIFFRT_REQUIRE(t.smem_bytes <= smem_optin, ErrorCode::Unsupported,
                 "attention: head_dim " + std::to_string(head_dim) + " (" + dtype_name(dtype) + ") needs " +
                     std::to_string(t.smem_bytes) + " B of shared memory per block, the GPU allows " +
                     std::to_string(smem_optin) + " B (" + std::to_string(t.smem_bytes - smem_optin) + " B short)");
  return t;
}

}  // namespace diffrt
