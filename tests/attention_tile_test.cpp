// attention_tile (kernels/attention/attention_tiles.h): the tile attention_cuda runs, chosen from the GPU's opt-in
// shared memory per block. No GPU needed: the launcher dispatches on exactly this host logic. Every head-dim bucket
// in every dtype must fit on every supported GPU class (sm_80, sm_86/sm_89, sm_90), and keep its preferred tile
// wherever that fits (no change on H100).
#include "kernels/attention/attention_tiles.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/attention/attention.h"

namespace diffrt {
namespace {

const DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};
const size_t kLimits[] = {kSmemOptinSm80, kSmemOptinSm86, kSmemOptinSm90};

// Every head dim attention_cuda accepts.
std::vector<int> head_dims() {
  std::vector<int> d;
  for (int x = 1; x <= 512; ++x) d.push_back(x);
  return d;
}

// The tiles before the limit was considered (what H100 has always run).
int preferred_kv_tile(int d, DType t) {
  if (t == DType::F32) return 32;
  return attention_mma_bucket(d) <= 128 ? 64 : 32;
}

TEST(AttentionTile, KnownBytes) {
  // The figures of the issue: d = 512 needs 108,544 B (fp16/bf16, 32 keys per tile) and 163,968 B (fp32).
  EXPECT_EQ(attention_mma_smem(512, 32, 2), 108544u);
  EXPECT_EQ(attention_mma_smem(512, 16, 2), 87552u);
  EXPECT_EQ(attention_f32_smem(512, false), 163968u);
  EXPECT_EQ(attention_f32_smem(512, true), 98432u);
  EXPECT_EQ(attention_mma_smem(128, 64, 2), 52224u);
  EXPECT_EQ(attention_mma_smem(256, 32, 2), 59392u);
  EXPECT_EQ(attention_f32_smem(256, false), 82048u);
}

TEST(AttentionTile, EveryBucketFitsEverySupportedGpu) {
  for (size_t limit : kLimits)
    for (DType t : kDtypes)
      for (int d : head_dims()) {
        const std::string what = "d=" + std::to_string(d) + " " + dtype_name(t) + " limit=" + std::to_string(limit);
        AttentionTile tile;
        ASSERT_NO_THROW(tile = attention_tile(d, t, limit)) << what;
        EXPECT_LE(tile.smem_bytes, limit) << what;
        EXPECT_EQ(tile.head_dim_bucket, t == DType::F32 ? attention_f32_bucket(d) : attention_mma_bucket(d)) << what;
        EXPECT_GE(tile.head_dim_bucket, d) << what;
        // The bytes are those of the kernel layout of this tile.
        if (t == DType::F32) {
          EXPECT_EQ(tile.kv_tile, 32) << what;
          EXPECT_EQ(tile.smem_bytes, attention_f32_smem(tile.head_dim_bucket, tile.kv_shared)) << what;
        } else {
          EXPECT_FALSE(tile.kv_shared) << what;
          EXPECT_EQ(tile.kv_tile % 16, 0) << what;  // whole mma k-steps of P.V
          EXPECT_EQ(tile.smem_bytes, attention_mma_smem(tile.head_dim_bucket, tile.kv_tile, dtype_size(t))) << what;
        }
        // The preferred tile is kept wherever it fits; only d = 512 ever falls back.
        const bool small = t == DType::F32 ? tile.kv_shared : tile.kv_tile != preferred_kv_tile(d, t);
        EXPECT_EQ(small, tile.head_dim_bucket == 512 && limit == kSmemOptinSm86) << what;
      }
}

TEST(AttentionTile, PreferredTilesOnSm80AndSm90) {
  for (size_t limit : {kSmemOptinSm80, kSmemOptinSm90})
    for (DType t : kDtypes)
      for (int d : {8, 40, 64, 72, 80, 128, 160, 256, 512}) {
        const AttentionTile tile = attention_tile(d, t, limit);
        EXPECT_EQ(tile.kv_tile, preferred_kv_tile(d, t)) << d << " " << dtype_name(t);
        EXPECT_FALSE(tile.kv_shared) << d << " " << dtype_name(t);
      }
  // fp32 d = 512 keeps separate K and V buffers on sm_80: 163,968 B <= 166,912 B.
  EXPECT_EQ(attention_tile(512, DType::F32, kSmemOptinSm80).smem_bytes, 163968u);
}

TEST(AttentionTile, SdVaeMidBlockOn99KbGpus) {
  // The SD VAE's mid-block attention: one head of 512.
  for (DType t : {DType::F16, DType::BF16}) {
    const AttentionTile tile = attention_tile(512, t, kSmemOptinSm86);
    EXPECT_EQ(tile.kv_tile, 16);
    EXPECT_EQ(tile.smem_bytes, 87552u);
  }
  const AttentionTile f = attention_tile(512, DType::F32, kSmemOptinSm86);
  EXPECT_EQ(f.kv_tile, 32);
  EXPECT_TRUE(f.kv_shared);
  EXPECT_EQ(f.smem_bytes, 98432u);
  // The launch description follows the limit; its default is sm_90's.
  AttentionParams p;
  p.head_dim = 512;
  p.dtype = DType::F16;
  EXPECT_EQ(attention_cuda_launch(p).kv_tile, 32);
  EXPECT_EQ(attention_cuda_launch(p, kSmemOptinSm86).kv_tile, 16);
  EXPECT_EQ(attention_cuda_launch(p, kSmemOptinSm86).out_chunks, 4);
  p.dtype = DType::F32;
  EXPECT_FALSE(attention_cuda_launch(p).kv_shared);
  EXPECT_TRUE(attention_cuda_launch(p, kSmemOptinSm86).kv_shared);
}

TEST(AttentionTile, TooLittleSharedMemoryNamesTheShortfall) {
  try {
    attention_tile(512, DType::F16, 64 * 1024);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    const std::string m = e.what();
    EXPECT_NE(m.find("87552"), std::string::npos) << m;           // what the smallest tile needs
    EXPECT_NE(m.find("65536"), std::string::npos) << m;           // what the GPU allows
    EXPECT_NE(m.find(std::to_string(87552 - 65536)), std::string::npos) << m;  // the shortfall
  }
  try {
    attention_tile(512, DType::F32, 90000);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find(std::to_string(98432 - 90000)), std::string::npos) << e.what();
  }
  EXPECT_THROW(attention_tile(0, DType::F16, kSmemOptinSm90), Error);
  EXPECT_THROW(attention_tile(513, DType::F16, kSmemOptinSm90), Error);
}

}  // namespace
}  // namespace diffrt
