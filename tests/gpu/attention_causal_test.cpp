// attention_cuda with causal = true vs attention_ref (causal): CLIP text-encoder shapes (SD 1: 12 heads of
// 64, SD 2: 16 heads of 64, the tiny fixture's 4 heads of 8, at 77 tokens, batch 1-4 as with CFG), lengths
// around the 64-row (tensor-core) and 16-row (fp32) query blocks, longer sequences where whole key tiles
// are skipped, head dims through every template bucket (8..512, incl. the column-chunked d > 160), a fused
// QKV buffer with a strided output whose gap columns must stay poisoned, misaligned pointers, Lq != Lkv,
// and V rows holding 1e4 where no query may look (a leak would dominate the output); d = 512 with the small tiles
// of 99 KB GPUs (sm_86/sm_89) forced. All dtypes; guard bytes, poisoned outputs, NaN checks and nmse bounds as in
// gpu_test_util.h.
#include <cmath>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "tests/gpu/attention_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct Case {
  int b, h, lq, lkv, d;
};
enum class Layout { Contiguous, PackedQkv, Misaligned };

// smem_limit != 0: run with the tiles of a GPU with that opt-in shared memory per block.
void run_case(const Case& s, DType t, Layout layout, bool poison_hidden = false, size_t smem_limit = 0) {
  const int hd = s.h * s.d;
  const bool packed = layout == Layout::PackedQkv;
  const size_t off = layout == Layout::Misaligned ? 1 : 0;
  const uint32_t seed = uint32_t(s.b * 7919 + s.h * 131 + s.lq * 17 + s.lkv * 5 + s.d);
  AttentionParams p;
  p.batch = s.b; p.heads = s.h; p.lq = s.lq; p.lkv = s.lkv; p.head_dim = s.d;
  p.scale = 1.5f / std::sqrt(float(s.d));  // somewhat peaked rows
  p.causal = true;
  p.dtype = t;
  p.ldo = packed ? hd + 8 : hd;
  const AttentionInputs in = upload_attention_inputs(p, t, packed, off, seed, [&](std::vector<float>& hv) {
    if (poison_hidden)  // keys >= lq are after every query: never visible
      for (int b = 0; b < s.b; ++b)
        for (int j = s.lq; j < s.lkv; ++j)
          for (int c = 0; c < hd; ++c) hv[(size_t(b) * s.lkv + j) * hd + c] = 1e4f;
  });
  const std::string what = "causal attn b=" + std::to_string(s.b) + " h=" + std::to_string(s.h) + " lq=" +
                           std::to_string(s.lq) + " lkv=" + std::to_string(s.lkv) + " d=" + std::to_string(s.d) + " " +
                           dtype_name(t) + (packed ? " packed" : off ? " misaligned" : "") +
                           (poison_hidden ? " poisoned-hidden-V" : "") +
                           (smem_limit ? " smem_limit=" + std::to_string(smem_limit) : "");
  expect_attention_matches_ref(p, in, off, smem_limit, what);
}

TEST(AttentionCausalGpu, ClipShapes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const Case cases[] = {{1, 12, 77, 77, 64}, {2, 12, 77, 77, 64}, {2, 16, 77, 77, 64}, {4, 4, 77, 77, 8}};
  for (const Case& s : cases)
    for (DType t : kAllDtypes) {
      run_case(s, t, Layout::Contiguous);
      run_case(s, t, Layout::PackedQkv);
    }
}

TEST(AttentionCausalGpu, LengthsAndHeadDims) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const Case cases[] = {{1, 1, 1, 1, 8},      {2, 3, 5, 5, 20},     {1, 2, 16, 16, 33},   {1, 2, 17, 17, 40},
                        {1, 2, 63, 63, 48},   {1, 2, 64, 64, 64},   {1, 2, 65, 65, 80},   {1, 2, 130, 130, 100},
                        {1, 2, 200, 200, 128}, {1, 2, 129, 129, 160}, {1, 1, 100, 100, 256}, {1, 1, 70, 70, 512},
                        {1, 2, 1000, 1000, 64}, {1, 1, 4096, 4096, 40}};
  for (const Case& s : cases)
    for (DType t : kAllDtypes) run_case(s, t, Layout::Contiguous);
}

TEST(AttentionCausalGpu, MisalignedAndUnequalLengths) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({1, 2, 77, 77, 40}, t, Layout::Misaligned);
    run_case({1, 2, 77, 20, 64}, t, Layout::Contiguous);    // Lq > Lkv: late rows see every key
    run_case({2, 2, 20, 300, 64}, t, Layout::Contiguous, true);  // keys >= Lq hold 1e4: never fetched
    run_case({1, 1, 70, 333, 32}, t, Layout::Contiguous, true);
  }
}

// d = 512 on 99 KB GPUs: 16-key tiles (fp16/bf16) put the diagonal in every 16-key tile; fp32 shares K/V.
TEST(AttentionCausalGpu, HeadDim512SmallTiles) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({1, 1, 70, 70, 512}, t, Layout::Contiguous, false, kSmemOptinSm86);
    run_case({1, 1, 17, 17, 512}, t, Layout::Contiguous, false, kSmemOptinSm86);
    run_case({1, 1, 20, 300, 512}, t, Layout::Contiguous, true, kSmemOptinSm86);
  }
}

}  // namespace
}  // namespace diffrt::test
