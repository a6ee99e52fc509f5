// embedding_cuda vs embedding_ref: CLIP shapes (batch 1-4 x 77 tokens, C = 768 / 1024 with the 49,408-row
// table, the tiny fixture's 32 x 1514), odd C (scalar path), misaligned tables, no position table, all
// dtypes, guard bytes and poisoned outputs (exact: a gather plus one fp32 add is bit-identical to the
// reference after rounding), and out-of-range ids giving NaN rows while the other rows stay exact.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/embedding/embedding.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct Shape {
  int n, l, c, vocab, positions;
  bool pos = true;
  size_t offset = 0;
};

void run_case(const Shape& s, DType t, int bad_row = -1) {
  std::vector<float> tok = random_normal(size_t(s.vocab) * s.c, uint32_t(s.c + s.vocab));
  std::vector<float> pos = random_normal(size_t(s.positions) * s.c, uint32_t(s.c * 3 + 1));
  std::vector<int32_t> ids(size_t(s.n) * s.l);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 13) % size_t(s.vocab));
  ids[0] = s.vocab - 1;
  if (bad_row >= 0) ids[size_t(bad_row)] = bad_row % 2 ? s.vocab : -5;
  DevTensor dtok = upload_rounded(tok, t, s.offset), dpos = upload_rounded(pos, t, s.offset);
  DeviceBuffer dids(ids.size() * sizeof(int32_t));
  DIFFRT_CUDA_CHECK(cudaMemcpy(dids.get(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  DevTensor dy(size_t(s.n) * s.l * s.c, t, s.offset);
  dy.poison();
  EmbeddingParams p;
  p.ids = static_cast<const int32_t*>(dids.get());
  p.token_table = dtok.ptr();
  p.pos_table = s.pos ? dpos.ptr() : nullptr;
  p.y = dy.ptr();
  p.n = s.n; p.l = s.l; p.c = s.c; p.vocab = s.vocab; p.max_positions = s.positions;
  p.dtype = t;
  embedding_cuda(p, nullptr);
  sync_check();

  std::vector<int32_t> ref_ids = ids;
  if (bad_row >= 0) ref_ids[size_t(bad_row)] = 0;
  std::vector<float> ref(size_t(s.n) * s.l * s.c);
  EmbeddingParams r = p;
  r.ids = ref_ids.data(); r.token_table = tok.data(); r.pos_table = s.pos ? pos.data() : nullptr; r.y = ref.data();
  r.dtype = DType::F32;
  embedding_ref(r);
  round_to(t, ref);  // one fp32 add then one rounding on both sides

  const std::string what = "embedding n=" + std::to_string(s.n) + " l=" + std::to_string(s.l) + " c=" +
                           std::to_string(s.c) + " " + dtype_name(t) + (s.offset ? " misaligned" : "") +
                           (s.pos ? "" : " no-pos") + (bad_row >= 0 ? " bad id at row " + std::to_string(bad_row) : "");
  EXPECT_TRUE(dy.guards_intact()) << what << ": guard bytes overwritten";
  const std::vector<float> got = dy.download();
  size_t mismatched = 0, nan_rows_ok = 0;
  for (size_t row = 0; row < size_t(s.n) * s.l; ++row) {
    bool all_nan = true;
    for (int c = 0; c < s.c; ++c) {
      const float g = got[row * s.c + c];
      if (int(row) == bad_row) {
        all_nan = all_nan && std::isnan(g);
      } else {
        mismatched += std::memcmp(&g, &ref[row * s.c + c], sizeof(float)) != 0;
      }
    }
    if (int(row) == bad_row) nan_rows_ok += all_nan;
  }
  EXPECT_EQ(mismatched, 0u) << what << ": elements differ from the reference";
  if (bad_row >= 0) {
    EXPECT_EQ(nan_rows_ok, 1u) << what << ": the bad id's row is not all NaN";
  }
}

TEST(EmbeddingGpu, ShapesAndDtypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const Shape shapes[] = {{1, 77, 768, 49408, 77}, {2, 77, 768, 49408, 77}, {4, 77, 1024, 49408, 77},
                          {2, 77, 32, 1514, 77},   {1, 1, 1, 1, 1},         {3, 5, 7, 11, 9},
                          {2, 77, 33, 100, 77},    {2, 20, 768, 1000, 77, false}};
  for (const Shape& s : shapes)
    for (DType t : kAllDtypes) run_case(s, t);
}

TEST(EmbeddingGpu, MisalignedTables) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2, 77, 768, 1000, 77, true, 1}, t);
    run_case({1, 77, 64, 100, 77, false, 1}, t);
  }
}

TEST(EmbeddingGpu, OutOfRangeIdGivesNaNRow) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2, 77, 768, 1000, 77}, t, 5);    // id -5
    run_case({2, 77, 768, 1000, 77}, t, 100);  // id == vocab
  }
}

// Argument validation happens before any CUDA call, so this runs (and must pass) without a GPU too.
TEST(EmbeddingGpu, RejectsBadArguments) {
  alignas(16) static float buf[64];
  static int32_t ids[4] = {};
  EmbeddingParams ok;
  ok.ids = ids; ok.token_table = buf; ok.pos_table = buf; ok.y = buf + 32;
  ok.n = 1; ok.l = 2; ok.c = 4; ok.vocab = 2; ok.max_positions = 2;
  auto expect_invalid = [](const EmbeddingParams& p, const char* what) {
    test::expect_invalid_args([](const EmbeddingParams& q) { embedding_cuda(q, nullptr); }, p, what);
  };
  EmbeddingParams p = ok; p.c = 0; expect_invalid(p, "c = 0");
  p = ok; p.vocab = 0; expect_invalid(p, "vocab = 0");
  p = ok; p.max_positions = 1; expect_invalid(p, "more tokens than positions");
  p = ok; p.ids = nullptr; expect_invalid(p, "null ids");
  p = ok; p.dtype = static_cast<DType>(7); expect_invalid(p, "bad dtype");
  p = ok; p.n = -1; expect_invalid(p, "negative n");
  EmbeddingParams empty;
  empty.c = 4; empty.vocab = 1;
  EXPECT_NO_THROW(embedding_cuda(empty, nullptr));
}

}  // namespace
}  // namespace diffrt::test
