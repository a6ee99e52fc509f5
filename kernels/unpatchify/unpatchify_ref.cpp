// CPU reference unpatchify (formula in unpatchify.h): a copy loop over the output in order.
// Tested by tests/patch_embed_test.cpp (against diffusers' reshape/einsum order written out) and end to end by
// tests/dit_parity_test.cpp.
#include <string>

#include "base/error.h"
#include "kernels/unpatchify/unpatchify.h"

namespace diffrt {

void unpatchify_ref(const UnpatchifyParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("unpatchify_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n >= 0 && p.gh >= 0 && p.gw >= 0 && p.patch >= 1 && p.c > 0, ErrorCode::Internal,
                 "unpatchify_ref: bad shape");
  if (p.n == 0 || p.gh == 0 || p.gw == 0) return;
  DIFFRT_REQUIRE(p.x && p.y && p.x != p.y, ErrorCode::Internal, "unpatchify_ref: null or aliased pointers");
  const float* x = static_cast<const float*>(p.x);  // x: [N, gh, gw, P*P*C]
  float* y = static_cast<float*>(p.y);              // y: [N, gh*P, gw*P, C]
  const int P = p.patch, C = p.c, H = p.gh * P, W = p.gw * P;
  const long long rows = static_cast<long long>(p.n) * H;
#pragma omp parallel for schedule(static) if (rows * W * C > 65536)
  for (long long r = 0; r < rows; ++r) {
    const long long n = r / H;
    const int oy = static_cast<int>(r % H), i = oy / P, u = oy % P;
    for (int ox = 0; ox < W; ++ox) {
      const int j = ox / P, v = ox % P;
      const float* src = x + ((n * p.gh + i) * p.gw + j) * static_cast<long long>(P * P * C) + (u * P + v) * C;
      float* dst = y + (r * W + ox) * C;
      for (int c = 0; c < C; ++c) dst[c] = src[c];
    }
  }
}

}  // namespace diffrt
