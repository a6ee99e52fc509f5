// CPU reference ops: (1) against torch/diffusers fixtures in tests/fixtures/ops (made by
// tests/fixtures/make_op_fixtures.py), (2) property tests of the optimised paths (blocked GEMM,
// im2col conv, block attention, GroupNorm) against naive double-precision loops written here, over
// awkward shapes. Outputs are poisoned with NaN before each run and guard elements after them are
// checked, so unwritten or out-of-bounds elements fail; NaN never compares close.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "base/error.h"
#include "kernels/conv/conv.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/gemm.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "base/npy.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kGuard = 1234.5f;  // sentinel written after outputs (and into untouched strides)

NpyArray load(const std::string& name) { return read_npy(test::source_path("tests/fixtures/ops/" + name + ".npy")); }
Vec loadf(const std::string& name) { return load(name).as_f32(); }

// [N, C, H, W] -> [N, H, W, C]
Vec nchw_to_nhwc(const Vec& x, int n, int c, int h, int w) {
  Vec y(x.size());
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) y[(static_cast<size_t>(b) * h * w + i) * c + ch] = x[(static_cast<size_t>(b) * c + ch) * h * w + i];
  return y;
}

using test::random_vec;
// A NaN-poisoned output buffer followed by guard elements.
using Out = test::GuardedOut;

// Compares and prints the errors (the report quotes them). rel_l2/max_abs are inf on NaN.
void expect_close(const float* got, const float* ref, size_t n, double tol_rel, double tol_abs,
                  const std::string& what) {
  test::expect_close(got, ref, n, tol_rel, tol_abs, what, 34);
}

// Worst errors over a property test's shapes, printed at the end for the record.
struct Worst {
  const char* name;
  double rel = 0, abs = 0;
  void add(const float* got, const float* want, size_t n) {
    rel = std::max(rel, test::rel_l2(got, want, n));
    abs = std::max(abs, test::max_abs_diff(got, want, n));
  }
  ~Worst() { std::printf("[errors] %-34s worst max_abs=%.3e rel_l2=%.3e\n", name, abs, rel); }
};

// ---------------------------------------------------------------- naive double references
// C[m,n] = sum_k A[m,k] B[n,k] (+ C)
std::vector<double> naive_gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb) {
  std::vector<double> c(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int l = 0; l < k; ++l) s += double(a[static_cast<size_t>(i) * lda + l]) * b[static_cast<size_t>(j) * ldb + l];
      c[static_cast<size_t>(i) * n + j] = s;
    }
  return c;
}

Vec naive_conv(const Conv2dParams& p, const Vec& x, const Vec& w, const float* bias, const float* res) {
  const int ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  Vec y(static_cast<size_t>(p.n) * ho * wo * p.cout);
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox)
        for (int co = 0; co < p.cout; ++co) {
          double s = bias ? bias[co] : 0.0;
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              const int iy = oy * p.stride - p.pad_top + ky, ix = ox * p.stride - p.pad_left + kx;
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w_in) continue;
              for (int ci = 0; ci < p.cin; ++ci)
                s += double(x[((static_cast<size_t>(n) * p.h + iy) * p.w_in + ix) * p.cin + ci]) *
                     w[((static_cast<size_t>(co) * p.kh + ky) * p.kw + kx) * p.cin + ci];
            }
          const size_t o = ((static_cast<size_t>(n) * ho + oy) * wo + ox) * p.cout + co;
          if (res) s += res[o];
          y[o] = static_cast<float>(s * p.out_scale);
        }
  return y;
}

// o: [B, Lq, ldo] computed in double (only head columns written).
void naive_attention(const AttentionParams& p, const Vec& q, const Vec& k, const Vec& v, Vec& o) {
  const int D = p.head_dim;
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads; ++h)
      for (int i = 0; i < p.lq; ++i) {
        std::vector<double> s(p.lkv);
        double mx = -INFINITY;
        for (int j = 0; j < p.lkv; ++j) {
          double d = 0;
          for (int e = 0; e < D; ++e)
            d += double(q[(static_cast<size_t>(b) * p.lq + i) * p.ldq + h * D + e]) *
                 k[(static_cast<size_t>(b) * p.lkv + j) * p.ldk + h * D + e];
          s[j] = d * p.scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int e = 0; e < D; ++e) {
          double acc = 0;
          for (int j = 0; j < p.lkv; ++j) acc += s[j] * v[(static_cast<size_t>(b) * p.lkv + j) * p.ldv + h * D + e];
          o[(static_cast<size_t>(b) * p.lq + i) * p.ldo + h * D + e] = static_cast<float>(acc / sum);
        }
      }
}

Vec naive_group_norm(const GroupNormParams& p, const Vec& x, const Vec& gamma, const Vec& beta, const Vec& emb) {
  const int C = p.c, cg = C / p.groups, es = p.emb_mode == EmbMode::ScaleShift ? 2 * C : C;
  Vec y(x.size());
  for (int n = 0; n < p.n; ++n)
    for (int g = 0; g < p.groups; ++g) {
      auto val = [&](int i, int ch) {
        double v = x[(static_cast<size_t>(n) * p.hw + i) * C + ch];
        return p.emb_mode == EmbMode::AddBeforeNorm ? v + emb[static_cast<size_t>(n) * es + ch] : v;
      };
      double s = 0, ss = 0;
      for (int i = 0; i < p.hw; ++i) for (int ch = g * cg; ch < (g + 1) * cg; ++ch) s += val(i, ch);
      const double mean = s / (double(p.hw) * cg);
      for (int i = 0; i < p.hw; ++i) for (int ch = g * cg; ch < (g + 1) * cg; ++ch) ss += (val(i, ch) - mean) * (val(i, ch) - mean);
      const double rstd = 1.0 / std::sqrt(ss / (double(p.hw) * cg) + p.eps);
      for (int i = 0; i < p.hw; ++i)
        for (int ch = g * cg; ch < (g + 1) * cg; ++ch) {
          double o = (val(i, ch) - mean) * rstd * gamma[ch] + beta[ch];
          if (p.emb_mode == EmbMode::ScaleShift)
            o = o * (1.0 + emb[static_cast<size_t>(n) * es + ch]) + emb[static_cast<size_t>(n) * es + C + ch];
          if (p.silu) o = o / (1.0 + std::exp(-o));
          y[(static_cast<size_t>(n) * p.hw + i) * C + ch] = static_cast<float>(o);
        }
    }
  return y;
}

// ---------------------------------------------------------------- fixtures: GroupNorm
struct GnCase { const char* ref; EmbMode mode; const char* emb; bool silu; };

TEST(OpsFixture, GroupNorm) {
  const int N = 2, C = 32, H = 5, W = 6, G = 8;
  const Vec x = nchw_to_nhwc(loadf("gn_x"), N, C, H, W);
  const Vec gamma = loadf("gn_gamma"), beta = loadf("gn_beta");
  for (const GnCase& c : {GnCase{"gn_plain", EmbMode::None, nullptr, false},
                          GnCase{"gn_silu", EmbMode::None, nullptr, true},
                          GnCase{"gn_add_silu", EmbMode::AddBeforeNorm, "gn_temb", true},
                          GnCase{"gn_scale_shift_silu", EmbMode::ScaleShift, "gn_ss", true}}) {
    const Vec ref = nchw_to_nhwc(loadf(c.ref), N, C, H, W);
    const Vec emb = c.emb ? loadf(c.emb) : Vec();
    for (bool in_place : {false, true}) {
      Out y(x.size());
      if (in_place) std::copy(x.begin(), x.end(), y.buf.begin());
      GroupNormParams p;
      p.x = in_place ? y.data() : x.data();
      p.y = y.data();
      p.gamma = gamma.data();
      p.beta = beta.data();
      p.emb = c.emb ? emb.data() : nullptr;
      p.emb_mode = c.mode;
      p.n = N; p.hw = H * W; p.c = C; p.groups = G; p.eps = 1e-6f; p.silu = c.silu;
      group_norm_ref(p);
      expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, std::string(c.ref) + (in_place ? " (in place)" : ""));
      EXPECT_TRUE(y.guards_ok());
    }
  }
}

// ---------------------------------------------------------------- fixtures: conv
TEST(OpsFixture, Conv2d) {
  const int N = 2, Ci = 12, H = 9, W = 11, Co = 20;
  const Vec x = nchw_to_nhwc(loadf("conv_x"), N, Ci, H, W);
  const Vec w3 = nchw_to_nhwc(loadf("conv_w3"), Co, Ci, 3, 3);  // OIHW -> OHWI = KRSC
  const Vec w1 = loadf("conv_w1");                                // [Co, Ci, 1, 1] is already KRSC
  const Vec b = loadf("conv_b");
  struct Case { const char* ref; int k, stride, pt, pl, pb, pr; };
  for (const Case& c : {Case{"conv_3x3_p1", 3, 1, 1, 1, 1, 1}, Case{"conv_1x1", 1, 1, 0, 0, 0, 0},
                        Case{"conv_3x3_s2_p1", 3, 2, 1, 1, 1, 1}, Case{"conv_3x3_s2_asym", 3, 2, 0, 0, 1, 1}}) {
    const NpyArray ra = load(c.ref);
    const int ho = static_cast<int>(ra.shape[2]), wo = static_cast<int>(ra.shape[3]);
    ASSERT_EQ(ho, conv_out_dim(H, c.k, c.stride, c.pt, c.pb)) << c.ref;
    ASSERT_EQ(wo, conv_out_dim(W, c.k, c.stride, c.pl, c.pr)) << c.ref;
    const Vec ref = nchw_to_nhwc(ra.as_f32(), N, Co, ho, wo);
    Conv2dParams p;
    p.x = x.data(); p.w = c.k == 3 ? w3.data() : w1.data(); p.bias = b.data();
    p.n = N; p.h = H; p.w_in = W; p.cin = Ci; p.cout = Co; p.kh = p.kw = c.k; p.stride = c.stride;
    p.pad_top = c.pt; p.pad_left = c.pl; p.pad_bottom = c.pb; p.pad_right = c.pr;
    Out y(ref.size());
    p.y = y.data();
    Vec scratch(conv2d_ref_scratch_floats(p));
    conv2d_ref(p, scratch.data());
    expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, c.ref);
    EXPECT_TRUE(y.guards_ok());
  }
}

// ---------------------------------------------------------------- fixtures: attention
TEST(OpsFixture, Attention) {
  struct Case { const char* name; int b, lq, lkv, h, d; };
  for (const Case& c : {Case{"attn_h1_d64", 1, 50, 50, 1, 64}, Case{"attn_h1_d256", 1, 40, 40, 1, 256},
                        Case{"attn_h4_d32", 2, 37, 37, 4, 32}, Case{"attn_cross_h2_d40", 2, 33, 77, 2, 40}}) {
    const std::string n = c.name;
    const Vec q = loadf(n + "_q"), k = loadf(n + "_k"), v = loadf(n + "_v"), ref = loadf(n + "_o");
    const int C = c.h * c.d;
    AttentionParams p;
    p.q = q.data(); p.k = k.data(); p.v = v.data();
    p.batch = c.b; p.heads = c.h; p.lq = c.lq; p.lkv = c.lkv; p.head_dim = c.d;
    p.ldq = p.ldk = p.ldv = p.ldo = C;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    Out o(ref.size());
    p.o = o.data();
    attention_ref(p);
    expect_close(o.data(), ref.data(), ref.size(), 1e-5, 1e-5, n);
    EXPECT_TRUE(o.guards_ok());
    if (c.lq != c.lkv) continue;
    // Same inputs through a fused QKV buffer [B, L, 3C] read in place, written into o [B, L, C + 5].
    Vec qkv(static_cast<size_t>(c.b) * c.lq * 3 * C);
    for (size_t r = 0; r < static_cast<size_t>(c.b) * c.lq; ++r)
      for (int j = 0; j < C; ++j) {
        qkv[r * 3 * C + j] = q[r * C + j];
        qkv[r * 3 * C + C + j] = k[r * C + j];
        qkv[r * 3 * C + 2 * C + j] = v[r * C + j];
      }
    const int ldo = C + 5;
    Out os(static_cast<size_t>(c.b) * c.lq * ldo);
    for (size_t r = 0; r < static_cast<size_t>(c.b) * c.lq; ++r)
      for (int j = C; j < ldo; ++j) os.buf[r * ldo + j] = kGuard;
    p.q = qkv.data(); p.k = qkv.data() + C; p.v = qkv.data() + 2 * C; p.o = os.data();
    p.ldq = p.ldk = p.ldv = 3 * C; p.ldo = ldo;
    attention_ref(p);
    Vec packed(ref.size());
    bool pad_ok = true;
    for (size_t r = 0; r < static_cast<size_t>(c.b) * c.lq; ++r) {
      for (int j = 0; j < C; ++j) packed[r * C + j] = os.buf[r * ldo + j];
      for (int j = C; j < ldo; ++j) pad_ok = pad_ok && os.buf[r * ldo + j] == kGuard;
    }
    expect_close(packed.data(), ref.data(), ref.size(), 1e-5, 1e-5, n + " (fused qkv)");
    EXPECT_TRUE(pad_ok && os.guards_ok()) << "attention wrote outside its head columns";
  }
}

// ---------------------------------------------------------------- fixtures: timestep embedding
TEST(OpsFixture, SinusoidalEmbedding) {
  const Vec t = loadf("temb_t");
  struct Case { const char* ref; int dim; bool flip; float shift; };
  for (const Case& c : {Case{"temb_d128_noflip_s1", 128, false, 1.0f}, Case{"temb_d320_flip_s0", 320, true, 0.0f},
                        Case{"temb_d9_noflip_s1", 9, false, 1.0f}}) {
    const Vec ref = loadf(c.ref);
    ASSERT_EQ(ref.size(), t.size() * c.dim);
    Out e(ref.size());
    sinusoidal_embedding_ref(t.data(), static_cast<int>(t.size()), c.dim, c.flip, c.shift, 10000.0f, e.data());
    size_t exact = 0;
    for (size_t i = 0; i < ref.size(); ++i) exact += e.buf[i] == ref[i];
    std::printf("[errors] %-34s bit-exact %zu / %zu\n", c.ref, exact, ref.size());
    // torch's vectorised exp (Sleef, <= 1 ulp) is not correctly rounded, ours (libm expf) is: about
    // 1 in 10 frequencies differ by 1 ulp (<= 1.2e-7 relative), which moves arg = t * freq by up to
    // |t| * 1.2e-7 rad. So each element may differ by |t| * 1.2e-7 plus sin/cos rounding, no more.
    const int dim = c.dim;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double bound = std::fabs(double(t[i / dim])) * 1.2e-7 + 2.5e-7;
      ASSERT_LE(std::fabs(double(e.buf[i]) - ref[i]), bound) << c.ref << " element " << i;  // NaN fails too
    }
    expect_close(e.data(), ref.data(), ref.size(), 1e-5, 1.2e-4, c.ref);
    EXPECT_TRUE(e.guards_ok());
  }
}

TEST(OpsFixture, TimestepEmbeddingMlpAndClassTable) {
  const Vec t = loadf("temb_t"), w1 = loadf("temb_mlp_w1"), b1 = loadf("temb_mlp_b1"), w2 = loadf("temb_mlp_w2"),
            b2 = loadf("temb_mlp_b2"), table = loadf("temb_mlp_table"), ref = loadf("temb_mlp_out");
  std::vector<int32_t> labels;
  for (int64_t l : load("temb_mlp_labels").as_i64()) labels.push_back(static_cast<int32_t>(l));
  TimestepEmbeddingParams p;
  p.timesteps = t.data(); p.class_labels = labels.data();
  p.w1 = w1.data(); p.b1 = b1.data(); p.w2 = w2.data(); p.b2 = b2.data(); p.class_table = table.data();
  p.n = 4; p.dim = 32; p.out_dim = 48; p.num_classes = 10; p.flip = true; p.freq_shift = 0.0f;
  Out out(ref.size());
  p.out = out.data();
  timestep_embedding_ref(p);
  expect_close(out.data(), ref.data(), ref.size(), 1e-6, 1e-5, "temb_mlp_out");
  EXPECT_TRUE(out.guards_ok());
  // Out-of-range labels are rejected before anything is written.
  for (int32_t bad : {-1, 10}) {
    std::vector<int32_t> lb = labels;
    lb[2] = bad;
    p.class_labels = lb.data();
    Out o2(ref.size());
    p.out = o2.data();
    EXPECT_THROW(timestep_embedding_ref(p), Error);
    EXPECT_TRUE(std::isnan(o2.buf[0]));
  }
}

// ---------------------------------------------------------------- fixtures: linear
TEST(OpsFixture, Linear) {
  const Vec x = loadf("linear_x"), w = loadf("linear_w"), b = loadf("linear_b");
  for (bool silu : {false, true}) {
    const Vec ref = loadf(silu ? "linear_silu_y" : "linear_y");
    LinearParams p;
    p.x = x.data(); p.w = w.data(); p.bias = b.data(); p.m = 7; p.n = 40; p.k = 48; p.silu_input = silu;
    Out y(ref.size());
    p.y = y.data();
    const Vec x_before = x;
    linear_ref(p);
    expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, silu ? "linear_silu_y" : "linear_y");
    EXPECT_TRUE(y.guards_ok());
    EXPECT_EQ(x, x_before) << "silu_input must not modify x";
  }
}

// ---------------------------------------------------------------- properties: GEMM / linear
TEST(OpsProperty, GemmMatchesNaiveDouble) {
  std::mt19937 rng(1);
  Worst worst{"gemm_nt_f32 vs naive double"};
  struct S { int m, n, k; };
  const S shapes[] = {{1, 1, 1},   {1, 7, 13},    {7, 1, 77},    {6, 16, 256},  {5, 15, 255},  {7, 17, 257},
                      {13, 77, 3}, {144, 64, 64}, {145, 33, 300}, {200, 130, 513}, {3, 1000, 9}, {290, 19, 600},
                      {64, 1100, 40}, {1, 300, 1}};
  for (const S& s : shapes) {
    for (bool strided : {false, true}) {
      for (bool acc : {false, true}) {
        const int lda = s.k + (strided ? 3 : 0), ldb = s.k + (strided ? 5 : 0), ldc = s.n + (strided ? 2 : 0);
        const Vec a = random_vec(static_cast<size_t>(s.m) * lda, rng), b = random_vec(static_cast<size_t>(s.n) * ldb, rng);
        const Vec c0 = random_vec(static_cast<size_t>(s.m) * ldc, rng);
        Out c(static_cast<size_t>(s.m) * ldc);
        std::copy(c0.begin(), c0.end(), c.buf.begin());
        if (!acc)  // poison the useful part; the ldc padding must stay as it was
          for (int i = 0; i < s.m; ++i) for (int j = 0; j < s.n; ++j) c.buf[static_cast<size_t>(i) * ldc + j] = kNaN;
        gemm_nt_f32(s.m, s.n, s.k, a.data(), lda, b.data(), ldb, c.data(), ldc, acc);
        const std::vector<double> r = naive_gemm(s.m, s.n, s.k, a.data(), lda, b.data(), ldb);
        Vec got, want;
        bool pad_ok = true;
        for (int i = 0; i < s.m; ++i) {
          for (int j = 0; j < s.n; ++j) {
            got.push_back(c.buf[static_cast<size_t>(i) * ldc + j]);
            want.push_back(static_cast<float>(r[static_cast<size_t>(i) * s.n + j] + (acc ? c0[static_cast<size_t>(i) * ldc + j] : 0.0)));
          }
          for (int j = s.n; j < ldc; ++j) pad_ok = pad_ok && c.buf[static_cast<size_t>(i) * ldc + j] == c0[static_cast<size_t>(i) * ldc + j];
        }
        const std::string tag = "gemm " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
                                (strided ? " strided" : "") + (acc ? " acc" : "");
        worst.add(got.data(), want.data(), got.size());
        const double ma = test::max_abs_diff(got.data(), want.data(), got.size());
        EXPECT_LE(ma, 2e-6 * std::sqrt(double(s.k)) + 1e-6) << tag;
        EXPECT_LE(test::rel_l2(got.data(), want.data(), got.size()), 1e-5) << tag;
        EXPECT_TRUE(pad_ok && c.guards_ok()) << tag;
      }
    }
  }
}

TEST(OpsProperty, LinearEpilogues) {
  std::mt19937 rng(2);
  Worst worst{"linear_ref vs naive double"};
  for (int trial = 0; trial < 12; ++trial) {
    const int m = 1 + rng() % 40, n = 1 + rng() % 70, k = 1 + rng() % 90;
    const bool silu = trial & 1, use_bias = trial & 2, use_res = trial & 4, in_place = trial >= 8;
    const Vec x = random_vec(static_cast<size_t>(m) * k, rng, -3, 3), w = random_vec(static_cast<size_t>(n) * k, rng);
    const Vec b = random_vec(n, rng), res = random_vec(static_cast<size_t>(m) * n, rng);
    const float scale = trial % 3 == 0 ? 1.0f : 0.7071f;
    Vec xa(x);
    if (silu) for (auto& v : xa) v = static_cast<float>(v / (1.0 + std::exp(-double(v))));
    const std::vector<double> r = naive_gemm(m, n, k, xa.data(), k, w.data(), k);
    Vec want(static_cast<size_t>(m) * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        const size_t o = static_cast<size_t>(i) * n + j;
        want[o] = static_cast<float>((r[o] + (use_bias ? b[j] : 0.0) + (use_res || in_place ? res[o] : 0.0)) * scale);
      }
    Out y(want.size());
    if (in_place) std::copy(res.begin(), res.end(), y.buf.begin());
    LinearParams p;
    p.x = x.data(); p.w = w.data(); p.bias = use_bias ? b.data() : nullptr;
    p.residual = in_place ? y.data() : use_res ? res.data() : nullptr;
    p.y = y.data(); p.m = m; p.n = n; p.k = k; p.silu_input = silu; p.out_scale = scale;
    linear_ref(p);
    worst.add(y.data(), want.data(), want.size());
    EXPECT_LE(test::rel_l2(y.data(), want.data(), want.size()), 1e-5) << "trial " << trial;
    EXPECT_TRUE(y.guards_ok());
  }
}

// ---------------------------------------------------------------- properties: conv
TEST(OpsProperty, ConvMatchesNaiveDouble) {
  std::mt19937 rng(3);
  Worst worst{"conv2d_ref vs naive double"};
  struct S { int n, h, w, cin, cout, k, stride, pt, pl, pb, pr; bool bias, res, in_place; float scale; };
  std::vector<S> shapes = {
      {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false, false, false, 1.0f},
      {1, 1, 1, 3, 5, 3, 1, 1, 1, 1, 1, true, false, false, 1.0f},
      {2, 7, 13, 3, 8, 3, 1, 1, 1, 1, 1, true, true, false, 0.5f},
      {1, 8, 8, 16, 13, 3, 2, 0, 0, 1, 1, true, false, false, 1.0f},   // diffusers downsample_padding=0
      {1, 13, 7, 7, 4, 3, 2, 0, 0, 1, 1, false, true, true, 1.0f},
      {3, 5, 5, 4, 7, 3, 2, 1, 1, 1, 1, true, true, true, 0.25f},
      {2, 9, 6, 20, 3, 1, 1, 0, 0, 0, 0, true, true, false, 1.0f},     // direct 1x1 path
      {1, 7, 7, 13, 77, 1, 1, 0, 0, 0, 0, false, true, true, 0.9f},    // 1x1 with in-place residual
      {1, 6, 6, 5, 6, 1, 2, 0, 0, 0, 0, true, false, false, 1.0f},     // 1x1 stride 2: im2col path
      {1, 5, 4, 2, 3, 3, 1, 2, 0, 1, 2, true, false, false, 1.0f},     // asymmetric, all sides
      {1, 65, 67, 3, 16, 3, 1, 1, 1, 1, 1, true, false, false, 1.0f},  // > 4096 rows: several chunks
      {2, 50, 50, 3, 8, 3, 1, 1, 1, 1, 1, true, true, true, 0.5f},     // a chunk spans two images
      {1, 12, 10, 128, 20, 3, 1, 1, 1, 1, 1, true, false, false, 1.0f},
  };
  for (int i = 0; i < 12; ++i) {  // random extra shapes
    const int k = (rng() % 2) ? 3 : 1, stride = 1 + rng() % 2;
    const int pad = k == 3 ? static_cast<int>(rng() % 2) : 0;
    shapes.push_back({1 + static_cast<int>(rng() % 2), 1 + static_cast<int>(rng() % 11), 1 + static_cast<int>(rng() % 11),
                      1 + static_cast<int>(rng() % 24), 1 + static_cast<int>(rng() % 24), k, stride, pad, pad, pad, pad,
                      static_cast<bool>(rng() % 2), static_cast<bool>(rng() % 2), false, 1.0f});
  }
  for (const S& s : shapes) {
    Conv2dParams p;
    p.n = s.n; p.h = s.h; p.w_in = s.w; p.cin = s.cin; p.cout = s.cout; p.kh = p.kw = s.k; p.stride = s.stride;
    p.pad_top = s.pt; p.pad_left = s.pl; p.pad_bottom = s.pb; p.pad_right = s.pr; p.out_scale = s.scale;
    if (s.h + s.pt + s.pb < s.k || s.w + s.pl + s.pr < s.k) continue;
    const int ho = conv_out_dim(s.h, s.k, s.stride, s.pt, s.pb), wo = conv_out_dim(s.w, s.k, s.stride, s.pl, s.pr);
    const size_t ny = static_cast<size_t>(s.n) * ho * wo * s.cout;
    const Vec x = random_vec(static_cast<size_t>(s.n) * s.h * s.w * s.cin, rng);
    const Vec w = random_vec(static_cast<size_t>(s.cout) * s.k * s.k * s.cin, rng);
    const Vec b = random_vec(s.cout, rng), res = random_vec(ny, rng);
    const bool use_res = s.res || s.in_place;
    const Vec want = naive_conv(p, x, w, s.bias ? b.data() : nullptr, use_res ? res.data() : nullptr);
    Out y(ny);
    if (s.in_place) std::copy(res.begin(), res.end(), y.buf.begin());
    p.x = x.data(); p.w = w.data(); p.bias = s.bias ? b.data() : nullptr;
    p.residual = s.in_place ? y.data() : s.res ? res.data() : nullptr;
    p.y = y.data();
    const size_t sf = conv2d_ref_scratch_floats(p);
    EXPECT_LE(sf, static_cast<size_t>(4096) * s.k * s.k * s.cin);
    Vec scratch(sf + 1);
    conv2d_ref(p, scratch.data());
    const std::string tag = "conv n" + std::to_string(s.n) + " " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                            std::to_string(s.cin) + "->" + std::to_string(s.cout) + " k" + std::to_string(s.k) + " s" +
                            std::to_string(s.stride);
    worst.add(y.data(), want.data(), ny);
    EXPECT_LE(test::rel_l2(y.data(), want.data(), ny), 1e-5) << tag;
    EXPECT_LE(test::max_abs_diff(y.data(), want.data(), ny), 1e-4) << tag;
    EXPECT_TRUE(y.guards_ok()) << tag;
  }
}

// ---------------------------------------------------------------- properties: attention
TEST(OpsProperty, AttentionMatchesNaiveDouble) {
  std::mt19937 rng(4);
  Worst worst{"attention_ref vs naive double"};
  struct S { int b, h, lq, lkv, d, pad; float sharp = 1.0f; };  // sharp multiplies the scale
  std::vector<S> shapes = {{1, 1, 1, 1, 1, 0},    {1, 1, 7, 13, 8, 3},   {2, 3, 13, 77, 40, 0}, {1, 1, 256, 256, 256, 0},
                           {1, 2, 65, 64, 64, 1}, {3, 1, 5, 1, 7, 2},    {1, 8, 77, 7, 40, 0},  {2, 1, 129, 130, 3, 5},
                           {1, 2, 33, 300, 16, 0, 20.0f}};  // near one-hot rows: exps far below 1e-38
  for (int i = 0; i < 8; ++i)
    shapes.push_back({1 + static_cast<int>(rng() % 2), 1 + static_cast<int>(rng() % 4), 1 + static_cast<int>(rng() % 90),
                      1 + static_cast<int>(rng() % 90), 1 + static_cast<int>(rng() % 70), static_cast<int>(rng() % 4)});
  for (const S& s : shapes) {
    const int C = s.h * s.d;
    AttentionParams p;
    p.batch = s.b; p.heads = s.h; p.lq = s.lq; p.lkv = s.lkv; p.head_dim = s.d;
    p.ldq = C + s.pad; p.ldk = C + 2 * s.pad; p.ldv = C + 3 * s.pad; p.ldo = C + s.pad;
    p.scale = s.sharp / std::sqrt(static_cast<float>(s.d));
    const Vec q = random_vec(static_cast<size_t>(s.b) * s.lq * p.ldq, rng, -2, 2);
    const Vec k = random_vec(static_cast<size_t>(s.b) * s.lkv * p.ldk, rng, -2, 2);
    const Vec v = random_vec(static_cast<size_t>(s.b) * s.lkv * p.ldv, rng);
    const size_t no = static_cast<size_t>(s.b) * s.lq * p.ldo;
    Vec want(no, kGuard);
    naive_attention(p, q, k, v, want);
    Out o(no);
    for (size_t r = 0; r < static_cast<size_t>(s.b) * s.lq; ++r)
      for (int j = C; j < p.ldo; ++j) o.buf[r * p.ldo + j] = kGuard;
    p.q = q.data(); p.k = k.data(); p.v = v.data(); p.o = o.data();
    attention_ref(p);
    const std::string tag = "attn b" + std::to_string(s.b) + " h" + std::to_string(s.h) + " lq" + std::to_string(s.lq) +
                            " lkv" + std::to_string(s.lkv) + " d" + std::to_string(s.d);
    worst.add(o.data(), want.data(), no);
    EXPECT_LE(test::rel_l2(o.data(), want.data(), no), 1e-5) << tag;  // guard columns compare exactly
    EXPECT_LE(test::max_abs_diff(o.data(), want.data(), no), 1e-5) << tag;
    EXPECT_TRUE(o.guards_ok()) << tag;
  }
}

// ---------------------------------------------------------------- properties: GroupNorm
TEST(OpsProperty, GroupNormMatchesNaiveDouble) {
  std::mt19937 rng(5);
  Worst worst{"group_norm_ref vs naive double"};
  struct S { int n, hw, c, g; };
  const S shapes[] = {{1, 1, 1, 1}, {1, 1, 32, 32}, {2, 7, 12, 3}, {1, 1024, 128, 32}, {3, 13, 64, 32}, {1, 81, 40, 8}, {2, 5, 6, 1}};
  int idx = 0;
  for (const S& s : shapes) {
    for (EmbMode mode : {EmbMode::None, EmbMode::AddBeforeNorm, EmbMode::ScaleShift}) {
      const bool silu = (idx++) % 2;
      const Vec x = random_vec(static_cast<size_t>(s.n) * s.hw * s.c, rng, -4, 6);
      const Vec gamma = random_vec(s.c, rng, 0.5f, 1.5f), beta = random_vec(s.c, rng);
      const Vec emb = random_vec(static_cast<size_t>(s.n) * s.c * 2, rng);
      GroupNormParams p;
      p.x = x.data(); p.gamma = gamma.data(); p.beta = beta.data();
      p.emb = mode == EmbMode::None ? nullptr : emb.data(); p.emb_mode = mode;
      p.n = s.n; p.hw = s.hw; p.c = s.c; p.groups = s.g; p.eps = 1e-5f; p.silu = silu;
      const Vec want = naive_group_norm(p, x, gamma, beta, emb);
      Out y(x.size());
      p.y = y.data();
      group_norm_ref(p);
      const std::string tag = "gn " + std::to_string(s.n) + "x" + std::to_string(s.hw) + "x" + std::to_string(s.c) + " g" + std::to_string(s.g);
      worst.add(y.data(), want.data(), x.size());
      EXPECT_LE(test::rel_l2(y.data(), want.data(), x.size()), 1e-6) << tag;
      EXPECT_LE(test::max_abs_diff(y.data(), want.data(), x.size()), 1e-5) << tag;
      EXPECT_TRUE(y.guards_ok()) << tag;
    }
  }
}

// ---------------------------------------------------------------- elementwise
TEST(OpsProperty, Elementwise) {
  std::mt19937 rng(6);
  const int N = 2, H = 3, W = 5, C = 7;
  const Vec x = random_vec(static_cast<size_t>(N) * H * W * C, rng);
  Out up(x.size() * 4);
  Upsample2xParams u;
  u.x = x.data(); u.y = up.data(); u.n = N; u.h = H; u.w = W; u.c = C;
  upsample2x_ref(u);
  bool ok = up.guards_ok();
  for (int n = 0; n < N; ++n)
    for (int oy = 0; oy < 2 * H; ++oy)
      for (int ox = 0; ox < 2 * W; ++ox)
        for (int c = 0; c < C; ++c)
          ok = ok && up.buf[((static_cast<size_t>(n) * 2 * H + oy) * 2 * W + ox) * C + c] ==
                         x[((static_cast<size_t>(n) * H + oy / 2) * W + ox / 2) * C + c];
  EXPECT_TRUE(ok) << "upsample2x";

  const long long P = 11;
  const Vec a = random_vec(P * 3, rng), b = random_vec(P * 5, rng);
  Out cat(P * 8);
  ConcatParams cp;
  cp.a = a.data(); cp.b = b.data(); cp.y = cat.data(); cp.pixels = P; cp.ca = 3; cp.cb = 5;
  concat_ref(cp);
  ok = cat.guards_ok();
  for (long long i = 0; i < P; ++i)
    for (int c = 0; c < 8; ++c) ok = ok && cat.buf[i * 8 + c] == (c < 3 ? a[i * 3 + c] : b[i * 5 + c - 3]);
  EXPECT_TRUE(ok) << "concat";

  Out af(x.size());
  AffineParams ap;
  ap.x = x.data(); ap.y = af.data(); ap.count = static_cast<long long>(x.size()); ap.scale = 2.0f; ap.shift = -1.0f;
  affine_ref(ap);
  ok = af.guards_ok();
  for (size_t i = 0; i < x.size(); ++i) ok = ok && af.buf[i] == 2.0f * x[i] - 1.0f;
  EXPECT_TRUE(ok) << "affine";
}

// ---------------------------------------------------------------- contracts
TEST(OpsContract, NonF32DtypeThrowsInternal) {
  float buf[64] = {};
  auto expect_internal = [](auto&& fn, const char* what) {
    try {
      fn();
      ADD_FAILURE() << what << " accepted fp16";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Internal) << what;
    }
  };
  GroupNormParams g; g.x = buf; g.y = buf; g.gamma = buf; g.beta = buf; g.n = 1; g.hw = 1; g.c = 1; g.groups = 1; g.dtype = DType::F16;
  expect_internal([&] { group_norm_ref(g); }, "group_norm_ref");
  AttentionParams a; a.q = a.k = a.v = buf; a.o = buf + 32; a.batch = a.heads = a.lq = a.lkv = a.head_dim = 1;
  a.ldq = a.ldk = a.ldv = a.ldo = 1; a.dtype = DType::BF16;
  expect_internal([&] { attention_ref(a); }, "attention_ref");
  LinearParams l; l.x = buf; l.w = buf; l.y = buf + 32; l.m = l.n = l.k = 1; l.dtype = DType::F16;
  expect_internal([&] { linear_ref(l); }, "linear_ref");
  Conv2dParams c; c.x = buf; c.w = buf; c.y = buf + 32; c.n = c.h = c.w_in = c.cin = c.cout = 1; c.dtype = DType::F16;
  expect_internal([&] { conv2d_ref(c, buf + 48); }, "conv2d_ref");
  TimestepEmbeddingParams t; t.timesteps = buf; t.w1 = t.w2 = buf; t.out = buf + 32; t.n = t.dim = t.out_dim = 1; t.dtype = DType::F16;
  expect_internal([&] { timestep_embedding_ref(t); }, "timestep_embedding_ref");
  Upsample2xParams u; u.x = buf; u.y = buf + 32; u.n = u.h = u.w = u.c = 1; u.dtype = DType::F16;
  expect_internal([&] { upsample2x_ref(u); }, "upsample2x_ref");
  ConcatParams cc; cc.a = cc.b = buf; cc.y = buf + 32; cc.pixels = 1; cc.ca = cc.cb = 1; cc.dtype = DType::BF16;
  expect_internal([&] { concat_ref(cc); }, "concat_ref");
  AffineParams af; af.x = buf; af.y = buf; af.count = 1; af.dtype = DType::F16;
  expect_internal([&] { affine_ref(af); }, "affine_ref");
}

TEST(OpsContract, NanNeverComparesCloseAndPropagates) {
  const float ref[3] = {1.0f, 2.0f, 3.0f};
  const float got[3] = {1.0f, kNaN, 3.0f};
  EXPECT_FALSE(test::rel_l2(got, ref, 3) <= 1.0);
  EXPECT_FALSE(test::max_abs_diff(got, ref, 3) <= 1.0);
  // A NaN input reaches the output of the GEMM and the attention instead of being masked.
  std::mt19937 rng(7);
  Vec a = random_vec(20 * 9, rng), b = random_vec(30 * 9, rng), c(20 * 30);
  a[5 * 9 + 4] = kNaN;
  gemm_nt_f32(20, 30, 9, a.data(), 9, b.data(), 9, c.data(), 30, false);
  EXPECT_TRUE(std::isnan(c[5 * 30 + 17]));
  EXPECT_FALSE(std::isnan(c[4 * 30 + 17]));
  Vec q = random_vec(4 * 8, rng), k = random_vec(6 * 8, rng), v = random_vec(6 * 8, rng), o(4 * 8);
  k[3 * 8 + 1] = kNaN;
  AttentionParams p;
  p.q = q.data(); p.k = k.data(); p.v = v.data(); p.o = o.data();
  p.batch = 1; p.heads = 1; p.lq = 4; p.lkv = 6; p.head_dim = 8; p.ldq = p.ldk = p.ldv = p.ldo = 8; p.scale = 0.35f;
  attention_ref(p);
  EXPECT_TRUE(std::isnan(o[0]));
}

}  // namespace
}  // namespace diffrt
