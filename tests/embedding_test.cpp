// embedding_ref (token + position gather) vs the index formula: CLIP-like shapes (77 tokens, C = 32, 768),
// odd C, no position table, batch > 1 with repeated ids, and the argument errors (out-of-range ids named
// with their position, more tokens than positions).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/embedding/embedding.h"

namespace diffrt::test {
namespace {

struct Shape {
  int n, l, c, vocab, positions;
  bool pos;
};

void check(const Shape& s) {
  std::mt19937 rng(uint32_t(s.n * 131 + s.l * 7 + s.c));
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> id(0, s.vocab - 1);
  std::vector<float> tok(size_t(s.vocab) * s.c), pos(size_t(s.positions) * s.c);
  for (float& v : tok) v = nd(rng);
  for (float& v : pos) v = nd(rng);
  std::vector<int32_t> ids(size_t(s.n) * s.l);
  for (int32_t& v : ids) v = id(rng);
  ids[0] = 0;
  ids.back() = s.vocab - 1;
  std::vector<float> y(size_t(s.n) * s.l * s.c, NAN);
  EmbeddingParams p;
  p.ids = ids.data(); p.token_table = tok.data(); p.pos_table = s.pos ? pos.data() : nullptr; p.y = y.data();
  p.n = s.n; p.l = s.l; p.c = s.c; p.vocab = s.vocab; p.max_positions = s.positions;
  embedding_ref(p);
  size_t bad = 0;
  for (int b = 0; b < s.n; ++b)
    for (int t = 0; t < s.l; ++t)
      for (int c = 0; c < s.c; ++c) {
        const float want = tok[size_t(ids[size_t(b) * s.l + t]) * s.c + c] + (s.pos ? pos[size_t(t) * s.c + c] : 0.0f);
        bad += y[(size_t(b) * s.l + t) * s.c + c] != want;
      }
  EXPECT_EQ(bad, 0u) << "n=" << s.n << " l=" << s.l << " c=" << s.c << " pos=" << s.pos;
}

TEST(EmbeddingRef, MatchesFormula) {
  const Shape shapes[] = {{1, 77, 32, 1514, 77, true}, {2, 77, 768, 1000, 77, true}, {3, 5, 7, 11, 9, true},
                          {1, 1, 1, 1, 1, true},       {4, 77, 33, 50, 77, false},   {2, 10, 1024, 300, 77, true}};
  for (const Shape& s : shapes) check(s);
}

TEST(EmbeddingRef, RejectsBadIdsAndSizes) {
  std::vector<float> tok(10 * 4, 1.0f), pos(3 * 4, 0.5f), y(2 * 3 * 4);
  std::vector<int32_t> ids = {0, 1, 2, 3, 10, 4};  // 10 is outside [0, 10)
  EmbeddingParams p;
  p.ids = ids.data(); p.token_table = tok.data(); p.pos_table = pos.data(); p.y = y.data();
  p.n = 2; p.l = 3; p.c = 4; p.vocab = 10; p.max_positions = 3;
  try {
    embedding_ref(p);
    ADD_FAILURE() << "accepted id 10";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("token id 10 at [1, 1]"), std::string::npos) << e.what();
  }
  ids[4] = -1;
  EXPECT_THROW(embedding_ref(p), Error);
  ids[4] = 9;
  EXPECT_NO_THROW(embedding_ref(p));
  p.max_positions = 2;  // 3 tokens, 2 positions
  EXPECT_THROW(embedding_ref(p), Error);
  p.max_positions = 3;
  p.n = 0;
  EXPECT_NO_THROW(embedding_ref(p));
}

}  // namespace
}  // namespace diffrt::test
