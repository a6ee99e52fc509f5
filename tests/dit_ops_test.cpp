// CPU references of the DiT ops against direct formulas: patch_embed (conv k=p s=p + bias + the 2-D sin-cos table),
// the position table itself (vs diffusers' registered buffers and the 1-D structure for non-square grids),
// unpatchify (diffusers' reshape + einsum order), LayerNorm with adaLN modulation, and the gated linear.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/npy.h"
#include "kernels/attention/attention.h"
#include "kernels/gemm/gemm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/unpatchify/unpatchify.h"
#include "tests/test_util.h"

using namespace diffrt;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

}  // namespace

TEST(PosEmbed, TableMatchesDiffusersBuffers) {
  // diffusers' own buffer (float64 table cast to float32) of the three fixture models: grids 4x4 (D 24), 6x6 (D 36).
  struct Case {
    const char* file;
    int g, dim;
  } cases[] = {{"tests/fixtures/dit/dit_s8_sigma/fwd0/intermediates/pos_embed.npy", 4, 24},
               {"tests/fixtures/dit/dit_s12_eps/fwd0/intermediates/pos_embed.npy", 6, 36},
               {"tests/fixtures/dit/dit_c10/fwd0/intermediates/pos_embed.npy", 4, 24}};
  for (const Case& c : cases) {
    std::vector<float> want = read_npy(test::source_path(c.file)).as_f32();
    std::vector<float> got(size_t(c.g) * c.g * c.dim);
    // dit_c10 has interpolation_scale 1.5.
    const float interp = std::string(c.file).find("c10") != std::string::npos ? 1.5f : 1.0f;
    pos_embed_table_ref(c.g, c.g, c.dim, c.g, interp, got.data());
    ASSERT_EQ(got.size(), want.size()) << c.file;
    EXPECT_EQ(test::max_abs_diff(got.data(), want.data(), want.size()), 0.0) << c.file;  // bit-exact
  }
}

TEST(PosEmbed, NonSquareGridsKeepTheColumnRowHalves) {
  // [emb1d(col[j]) | emb1d(row[i])], col[j] = j / (gw / base) / scale, emb1d = [sin(pos w_k) | cos(pos w_k)].
  const int gh = 3, gw = 5, D = 16, base = 4;
  const float scale = 1.5f;
  std::vector<float> t(size_t(gh) * gw * D);
  pos_embed_table_ref(gh, gw, D, base, scale, t.data());
  for (int i = 0; i < gh; ++i)
    for (int j = 0; j < gw; ++j)
      for (int d = 0; d < D; ++d) {
        const bool col = d < D / 2;
        const int e = d % (D / 2), k = e % (D / 4);
        const float pos = float(float(col ? j : i) / float(double(col ? gw : gh) / base)) / scale;
        const double w = 1.0 / std::pow(10000.0, double(k) / (D / 4.0));
        const double v = e < D / 4 ? std::sin(double(pos) * w) : std::cos(double(pos) * w);
        ASSERT_EQ(t[(size_t(i) * gw + j) * D + d], float(v)) << i << " " << j << " " << d;
      }
}

TEST(PatchEmbedRef, MatchesADirectConvolution) {
  struct Shape {
    int n, h, w, cin, dim, p;
    bool pos;
  } shapes[] = {{2, 8, 8, 4, 24, 2, true}, {1, 12, 6, 4, 36, 2, true}, {3, 9, 6, 3, 8, 3, true},
                {1, 4, 4, 5, 12, 1, false}, {2, 16, 8, 4, 16, 8, true}};
  for (const Shape& s : shapes) {
    const int gh = s.h / s.p, gw = s.w / s.p, K = s.p * s.p * s.cin;
    std::vector<float> x = randn(size_t(s.n) * s.h * s.w * s.cin, 1), w = randn(size_t(s.dim) * K, 2, 0.3f),
                       b = randn(size_t(s.dim), 3), y(size_t(s.n) * gh * gw * s.dim, NAN);
    PatchEmbedParams p;
    p.x = x.data(); p.w = w.data(); p.bias = b.data(); p.y = y.data();
    p.n = s.n; p.h = s.h; p.w_in = s.w; p.cin = s.cin; p.dim = s.dim; p.patch = s.p;
    p.pos_embed = s.pos; p.base_size = 4; p.interpolation_scale = 1.0f;
    patch_embed_ref(p);
    double worst = 0;
    for (int n = 0; n < s.n; ++n)
      for (int i = 0; i < gh; ++i)
        for (int j = 0; j < gw; ++j)
          for (int d = 0; d < s.dim; ++d) {
            double acc = b[size_t(d)];
            for (int u = 0; u < s.p; ++u)
              for (int v = 0; v < s.p; ++v)
                for (int c = 0; c < s.cin; ++c)
                  acc += double(x[((size_t(n) * s.h + i * s.p + u) * s.w + j * s.p + v) * s.cin + c]) *
                         w[((size_t(d) * s.p + u) * s.p + v) * s.cin + c];
            float want = float(acc);
            if (s.pos) want += float(pos_embed_value(i, j, d, gh, gw, s.dim, 4, 1.0f));
            worst = std::max(worst, double(std::fabs(y[((size_t(n) * gh + i) * gw + j) * s.dim + d] - want)));
          }
    EXPECT_EQ(worst, 0.0) << s.n << "x" << s.h << "x" << s.w << " p" << s.p;
  }
}

TEST(UnpatchifyRef, FollowsDiffusersEinsumOrder) {
  // diffusers: x.reshape(N, gh, gw, p, p, C); einsum("nhwpqc->nchpwq") -> [N, C, gh*p, gw*p]; here NHWC.
  for (auto [n, gh, gw, p, c] : {std::array<int, 5>{2, 4, 4, 2, 8}, {1, 3, 5, 2, 4}, {2, 2, 3, 4, 3}, {1, 6, 2, 1, 5}}) {
    std::vector<float> x(size_t(n) * gh * gw * p * p * c), y(size_t(n) * gh * p * gw * p * c, NAN);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
    UnpatchifyParams q;
    q.x = x.data(); q.y = y.data(); q.n = n; q.gh = gh; q.gw = gw; q.patch = p; q.c = c;
    unpatchify_ref(q);
    for (int b = 0; b < n; ++b)
      for (int i = 0; i < gh; ++i)
        for (int j = 0; j < gw; ++j)
          for (int u = 0; u < p; ++u)
            for (int v = 0; v < p; ++v)
              for (int k = 0; k < c; ++k) {
                const float src = x[((((size_t(b) * gh + i) * gw + j) * p + u) * p + v) * c + k];
                ASSERT_EQ(y[((size_t(b) * gh * p + i * p + u) * gw * p + j * p + v) * c + k], src);
              }
  }
}

TEST(LayerNormRef, AdaLnModulation) {
  // y = LN(x) * gamma + beta, then * (1 + scale[s]) + shift[s]; mod rows [N, M] with slices at offsets.
  const int N = 3, T = 5, C = 12, M = 6 * C;
  std::vector<float> x = randn(size_t(N) * T * C, 4, 2.0f), mod = randn(size_t(N) * M, 5, 0.5f),
                     g = randn(C, 6), b = randn(C, 7);
  for (float& v : x) v += 3.0f;
  for (bool affine : {false, true}) {
    std::vector<float> y(x.size(), NAN);
    LayerNormParams p;
    p.x = x.data(); p.y = y.data(); p.rows = N * T; p.c = C; p.eps = 1e-6f;
    if (affine) { p.gamma = g.data(); p.beta = b.data(); }
    p.shift = mod.data() + 3 * C; p.scale = mod.data() + 4 * C; p.mod_ld = M; p.rows_per_sample = T;
    layer_norm_ref(p);
    for (int r = 0; r < N * T; ++r) {
      const float* xr = x.data() + size_t(r) * C;
      double mean = 0, var = 0;
      for (int c = 0; c < C; ++c) mean += xr[c];
      mean /= C;
      for (int c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
      var /= C;
      for (int c = 0; c < C; ++c) {
        double v = (xr[c] - mean) / std::sqrt(var + 1e-6);
        if (affine) v = v * g[size_t(c)] + b[size_t(c)];
        const float* m = mod.data() + size_t(r / T) * M;
        const float want = float(v) * (1.0f + m[4 * C + c]) + m[3 * C + c];
        ASSERT_NEAR(y[size_t(r) * C + c], want, 1e-6f * (1 + std::fabs(want))) << r << " " << c;
      }
    }
  }
}

TEST(LinearRef, GatedResidual) {
  // y = res + gate[s, j] * (x W^T + b), s = row / rows_per_gate.
  const int N = 2, T = 7, K = 9, O = 10, M = 3 * O;
  std::vector<float> x = randn(size_t(N) * T * K, 8), w = randn(size_t(O) * K, 9, 0.3f), b = randn(O, 10),
                     res = randn(size_t(N) * T * O, 11), gate = randn(size_t(N) * M, 12), y(size_t(N) * T * O, NAN);
  LinearParams p;
  p.x = x.data(); p.w = w.data(); p.bias = b.data(); p.residual = res.data(); p.y = y.data();
  p.m = N * T; p.n = O; p.k = K;
  p.gate = gate.data() + 2 * O; p.gate_ld = M; p.rows_per_gate = T;
  linear_ref(p);
  for (int r = 0; r < N * T; ++r)
    for (int j = 0; j < O; ++j) {
      double acc = b[size_t(j)];
      for (int k = 0; k < K; ++k) acc += double(x[size_t(r) * K + k]) * w[size_t(j) * K + k];
      const double want = res[size_t(r) * O + j] + double(gate[size_t(r / T) * M + 2 * O + j]) * acc;
      ASSERT_NEAR(y[size_t(r) * O + j], want, 1e-5 * (1 + std::fabs(want)));
    }
  // A gate without a residual, or with the residual in y, is refused.
  p.residual = nullptr;
  EXPECT_THROW(linear_ref(p), Error);
  p.residual = y.data();
  EXPECT_THROW(linear_ref(p), Error);
}

TEST(AttentionLaunch, DiTHeadDim72TakesTheTensorCorePath) {
  // No GPU needed: the launcher dispatches on exactly this host logic.
  AttentionParams p;
  p.head_dim = 72;
  for (DType t : {DType::F16, DType::BF16}) {
    p.dtype = t;
    const AttentionLaunch l = attention_cuda_launch(p);
    EXPECT_TRUE(l.tensor_cores);
    EXPECT_EQ(l.head_dim_bucket, 80);  // 72 of 80 columns useful
    EXPECT_EQ(l.kv_tile, 64);
    EXPECT_EQ(l.out_chunks, 1);
  }
  p.dtype = DType::F32;  // fp32 models: the exact SIMT kernel, by design
  EXPECT_FALSE(attention_cuda_launch(p).tensor_cores);
  EXPECT_EQ(attention_cuda_launch(p).head_dim_bucket, 96);
  // SD's and DDPM's head dims keep their buckets.
  p.dtype = DType::F16;
  for (auto [d, bucket] : {std::pair{40, 48}, {64, 64}, {80, 80}, {160, 160}, {256, 256}, {512, 512}, {12, 32}}) {
    p.head_dim = d;
    EXPECT_EQ(attention_cuda_launch(p).head_dim_bucket, bucket) << d;
  }
}
