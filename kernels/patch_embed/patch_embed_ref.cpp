// CPU reference DiT patch embedding (formula and layouts in patch_embed.h): per token, the conv sum in double
// (rounded to fp32 as the conv output), then + the fp32 position-table entry, rounded once. The table follows
// numpy's arithmetic step by step: float32 grid positions, float64 frequencies, products and sin/cos.
// Tested by tests/patch_embed_test.cpp (naive loops, the table against diffusers' pos_embed for the fixture grids
// and a non-square one) and end to end by tests/dit_parity_test.cpp (intermediates/patch_tokens.npy).
#include <cmath>
#include <string>
#include <vector>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/patch_embed/patch_embed.h"

namespace diffrt {

double pos_embed_value(int i, int j, int d, int gh, int gw, int dim, int base_size, float interpolation_scale) {
  const int half = dim / 2, quarter = dim / 4;
  const bool use_col = d < half;  // [emb1d(col) | emb1d(row)]
  const int g = use_col ? gw : gh;
  const int idx = use_col ? j : i;
  const int e = d % half;
  // numpy: arange(g, float32) / (g / base_size) / interpolation_scale, both divisions in float32.
  volatile float step = static_cast<float>(static_cast<double>(g) / static_cast<double>(base_size));
  volatile float a = static_cast<float>(idx) / step;
  const float pos = a / interpolation_scale;
  const int k = e < quarter ? e : e - quarter;
  const double omega = 1.0 / std::pow(10000.0, static_cast<double>(k) / (static_cast<double>(half) / 2.0));
  const double arg = static_cast<double>(pos) * omega;
  return e < quarter ? std::sin(arg) : std::cos(arg);
}

void pos_embed_table_ref(int gh, int gw, int dim, int base_size, float interpolation_scale, float* table) {
  DIFFRT_REQUIRE(gh > 0 && gw > 0 && dim > 0 && dim % 4 == 0 && base_size > 0 && interpolation_scale > 0.0f && table,
                 ErrorCode::Internal, "pos_embed_table_ref: bad arguments");
  for (int i = 0; i < gh; ++i)
    for (int j = 0; j < gw; ++j)
      for (int d = 0; d < dim; ++d)
        table[(static_cast<size_t>(i) * gw + j) * dim + d] =
            static_cast<float>(pos_embed_value(i, j, d, gh, gw, dim, base_size, interpolation_scale));
}

void patch_embed_ref(const PatchEmbedParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("patch_embed_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n >= 0 && p.patch >= 1 && p.h >= 0 && p.w_in >= 0 && p.h % p.patch == 0 && p.w_in % p.patch == 0 &&
                     p.cin > 0 && p.dim > 0 && (!p.pos_embed || (p.dim % 4 == 0 && p.base_size > 0 &&
                                                                 p.interpolation_scale > 0.0f)),
                 ErrorCode::Internal,
                 "patch_embed_ref: bad shape n=" + std::to_string(p.n) + " h=" + std::to_string(p.h) + " w=" +
                     std::to_string(p.w_in) + " p=" + std::to_string(p.patch) + " cin=" + std::to_string(p.cin) +
                     " dim=" + std::to_string(p.dim));
  const int P = p.patch, gh = p.h / P, gw = p.w_in / P, C = p.cin, D = p.dim;
  if (p.n == 0 || gh == 0 || gw == 0) return;
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::Internal, "patch_embed_ref: null pointer");
  const float* x = static_cast<const float*>(p.x);        // x: [N, H, W, C]
  const float* w = static_cast<const float*>(p.w);        // w: [D, P, P, C]
  const float* bias = static_cast<const float*>(p.bias);  // [D] or null
  float* y = static_cast<float*>(p.y);                    // y: [N, gh, gw, D]
  std::vector<float> table;
  if (p.pos_embed) {
    table.resize(static_cast<size_t>(gh) * gw * D);
    pos_embed_table_ref(gh, gw, D, p.base_size, p.interpolation_scale, table.data());
  }
  const long long tokens = static_cast<long long>(p.n) * gh * gw;
  const int K = P * P * C;
#pragma omp parallel for schedule(static) if (tokens * D * K > 65536)
  for (long long t = 0; t < tokens; ++t) {
    const int n = static_cast<int>(t / (static_cast<long long>(gh) * gw));
    const int i = static_cast<int>(t / gw % gh), j = static_cast<int>(t % gw);
    std::vector<float> patch(static_cast<size_t>(K));  // (u, v, c) order, as the KRSC weight rows
    for (int u = 0; u < P; ++u)
      for (int v = 0; v < P; ++v)
        for (int c = 0; c < C; ++c)
          patch[(static_cast<size_t>(u) * P + v) * C + c] =
              x[((static_cast<size_t>(n) * p.h + i * P + u) * p.w_in + j * P + v) * C + c];
    float* yt = y + static_cast<size_t>(t) * D;
    for (int d = 0; d < D; ++d) {
      const float* wd = w + static_cast<size_t>(d) * K;
      double s = bias ? bias[d] : 0.0;
      for (int k = 0; k < K; ++k) s += static_cast<double>(patch[k]) * wd[k];
      float v = static_cast<float>(s);
      if (p.pos_embed) v += table[(static_cast<size_t>(i) * gw + j) * D + d];
      yt[d] = v;
    }
  }
}

}  // namespace diffrt
