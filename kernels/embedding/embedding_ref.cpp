// CPU reference token + position embedding (formula in embedding.h). Rows are independent: one OpenMP
// loop over the n*l tokens. Tested by tests/embedding_test.cpp against a direct index formula, with the
// CLIP fixture's tables, and for out-of-range ids.
#include <string>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/embedding/embedding.h"

namespace diffrt {

void embedding_ref(const EmbeddingParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("embedding_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n >= 0 && p.l >= 0 && p.c > 0 && p.vocab > 0, ErrorCode::Internal,
                 "embedding_ref: bad shape n=" + std::to_string(p.n) + " l=" + std::to_string(p.l) +
                     " c=" + std::to_string(p.c) + " vocab=" + std::to_string(p.vocab));
  DIFFRT_REQUIRE(!p.pos_table || p.l <= p.max_positions, ErrorCode::InvalidArgument,
                 "embedding_ref: " + std::to_string(p.l) + " tokens but only " + std::to_string(p.max_positions) +
                     " positions");
  if (p.n == 0 || p.l == 0) return;
  DIFFRT_REQUIRE(p.ids && p.token_table && p.y, ErrorCode::Internal, "embedding_ref: null pointer");
  const long long rows = (long long)p.n * p.l;
  for (long long r = 0; r < rows; ++r)
    if (p.ids[r] < 0 || p.ids[r] >= p.vocab)
      fail(ErrorCode::InvalidArgument, "token id " + std::to_string(p.ids[r]) + " at [" + std::to_string(r / p.l) +
                                           ", " + std::to_string(r % p.l) + "] is outside the vocabulary [0, " +
                                           std::to_string(p.vocab) + ")");
  const float* tok = static_cast<const float*>(p.token_table);  // [vocab, C]
  const float* pos = static_cast<const float*>(p.pos_table);    // [max_positions, C] or null
  float* y = static_cast<float*>(p.y);                          // [n, l, C]
  const long long C = p.c;
#pragma omp parallel for schedule(static) if (rows * C > 65536)
  for (long long r = 0; r < rows; ++r) {
    const float* t = tok + (long long)p.ids[r] * C;
    float* yr = y + r * C;
    if (pos) {
      const float* q = pos + (r % p.l) * C;
      for (long long c = 0; c < C; ++c) yr[c] = t[c] + q[c];
    } else {
      for (long long c = 0; c < C; ++c) yr[c] = t[c];
    }
  }
}

}  // namespace diffrt
