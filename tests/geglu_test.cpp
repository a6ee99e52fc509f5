// geglu_ref (CPU reference of diffusers GEGLU's activation): (1) against fixtures made by
// diffusers.models.activations.GEGLU with random weights (tests/fixtures/make_op_fixtures.py geglu): the
// activation on the module's own projection, and linear_ref + geglu_ref against the whole module; and
// F.gelu(approximate="none") on gate values far into both tails; (2) against a naive long-double loop
// using the textbook 0.5 g (1 + erf(g / sqrt 2)) form over SD and awkward shapes; (3) limits and contract.
// Outputs are NaN-poisoned and followed by guard elements.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/gemm.h"
#include "base/npy.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

NpyArray load(const std::string& name) { return read_npy(test::source_path("tests/fixtures/ops/" + name + ".npy")); }

using Out = test::GuardedOut;
using test::expect_close;

Vec run_geglu(const Vec& x, long long rows, int f, const std::string& what) {
  Out y(size_t(rows) * f);
  GegluParams p;
  p.x = x.data();
  p.y = y.data();
  p.rows = rows;
  p.f = f;
  geglu_ref(p);
  EXPECT_TRUE(y.guards_ok()) << what << ": guard overwritten";
  return Vec(y.buf.begin(), y.buf.begin() + long(y.n));
}

// ---------------------------------------------------------------- fixtures (diffusers / torch)
TEST(GegluFixture, MatchesDiffusersGeglu) {
  const NpyArray proj = load("geglu_proj"), ref_a = load("geglu_y");
  ASSERT_EQ(proj.shape, (std::vector<int64_t>{2, 9, 80}));
  ASSERT_EQ(ref_a.shape, (std::vector<int64_t>{2, 9, 40}));
  const Vec h = proj.as_f32(), ref = ref_a.as_f32();
  const Vec y = run_geglu(h, 18, 40, "geglu_y");
  expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, "geglu_y (on the module's projection)");

  // The whole module: linear_ref (x @ W^T + b, W rows 0..F-1 -> hidden, F..2F-1 -> gate) then geglu_ref.
  const Vec x = load("geglu_x").as_f32(), w = load("geglu_w").as_f32(), b = load("geglu_b").as_f32();
  ASSERT_EQ(w.size(), 80u * 24);
  Vec lin(h.size());
  LinearParams lp;
  lp.x = x.data(); lp.w = w.data(); lp.bias = b.data(); lp.y = lin.data(); lp.m = 18; lp.n = 80; lp.k = 24;
  linear_ref(lp);
  expect_close(lin.data(), h.data(), h.size(), 1e-6, 1e-5, "geglu proj (linear_ref)");
  const Vec y2 = run_geglu(lin, 18, 40, "geglu module");
  expect_close(y2.data(), ref.data(), ref.size(), 1e-6, 2e-5, "geglu_y (linear_ref + geglu_ref)");
}

TEST(GegluFixture, TailsMatchTorchGelu) {
  const NpyArray xa = load("geglu_act_x"), ya = load("geglu_act_y");
  ASSERT_EQ(xa.shape, (std::vector<int64_t>{6, 34}));
  const Vec x = xa.as_f32(), ref = ya.as_f32();
  const Vec y = run_geglu(x, 6, 17, "geglu_act");
  expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, "geglu_act_y (F = 17, |gate| to 16)");
}

// ---------------------------------------------------------------- properties (naive long double)
TEST(GegluRef, MatchesNaiveLongDouble) {
  std::mt19937 rng(21);
  struct S { long long rows; int f; float scale; };
  const S shapes[] = {{1, 1, 1}, {3, 1, 4}, {77, 17, 3}, {2, 33, 1}, {2 * 64, 5120, 2},
                      {2 * 256, 1280, 1}, {5, 4097, 6}, {1, 2560, 10}};
  double worst_rel = 0, worst_abs = 0;
  for (const S& s : shapes) {
    std::normal_distribution<float> d(0.0f, s.scale);
    Vec x(size_t(s.rows) * 2 * s.f);
    for (float& v : x) v = d(rng);
    Vec want(size_t(s.rows) * s.f);
    for (long long r = 0; r < s.rows; ++r)
      for (int j = 0; j < s.f; ++j) {
        const long double h = x[size_t(r) * 2 * s.f + j], g = x[size_t(r) * 2 * s.f + s.f + j];
        want[size_t(r) * s.f + j] = float(h * 0.5L * g * (1.0L + std::erf(g / std::sqrt(2.0L))));
      }
    const std::string what = "geglu " + std::to_string(s.rows) + "x" + std::to_string(s.f);
    const Vec got = run_geglu(x, s.rows, s.f, what);
    const double rl = test::rel_l2(got.data(), want.data(), want.size());
    const double ma = test::max_abs_diff(got.data(), want.data(), want.size());
    worst_rel = std::max(worst_rel, rl);
    worst_abs = std::max(worst_abs, ma);
    EXPECT_LE(rl, 1e-7) << what;
    EXPECT_LE(ma, 1e-5) << what;  // |y| reaches ~|h g| ~ 100 for scale 10
  }
  std::printf("[errors] %-40s worst max_abs=%.3e rel_l2=%.3e\n", "geglu_ref vs naive long double", worst_abs, worst_rel);
}

TEST(GegluRef, LimitsAndNan) {
  // gelu(0) = 0, gelu(g) -> g for g >> 0, -> 0 (from below, never NaN) for g << 0; NaN propagates.
  const Vec x = {2.0f, 3.0f, -5.0f, 1.0f, kNaN, 4.0f,  // hidden
                 0.0f, 30.0f, 30.0f, -30.0f, 1.0f, kNaN};  // gate
  const Vec y = run_geglu(x, 1, 6, "limits");
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 90.0f);
  EXPECT_EQ(y[2], -150.0f);
  EXPECT_EQ(y[3], 0.0f);  // -30 Phi(-30) ~ -5e-197 underflows to -0 in fp32
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_TRUE(std::isnan(y[5]));
  // The erfc form keeps relative accuracy deep in the left tail: gelu(-8) = -8 Phi(-8) = -4.98e-15
  // (1 + erf(-8 / sqrt 2) in double would keep only ~1 significant digit).
  const Vec t = {1.0f, -8.0f};
  const float g8 = run_geglu(t, 1, 1, "tail")[0];
  EXPECT_NEAR(g8 / -4.9767684594174555e-15, 1.0, 1e-6);
}

TEST(GegluRef, RejectsBadArguments) {
  float buf[64] = {};
  auto expect_internal = [](const GegluParams& p, const char* what) {
    test::expect_rejected([](const GegluParams& q) { geglu_ref(q); }, p, ErrorCode::Internal, what);
  };
  GegluParams ok;
  ok.x = buf; ok.y = buf + 32; ok.rows = 2; ok.f = 8;  // x: 32 floats, y: 16 floats, disjoint
  EXPECT_NO_THROW(geglu_ref(ok));
  GegluParams p = ok; p.dtype = DType::F16; expect_internal(p, "fp16");
  p = ok; p.dtype = DType::BF16; expect_internal(p, "bf16");
  p = ok; p.f = 0; expect_internal(p, "f = 0");
  p = ok; p.rows = -1; expect_internal(p, "rows < 0");
  p = ok; p.x = nullptr; expect_internal(p, "null x");
  p = ok; p.y = nullptr; expect_internal(p, "null y");
  p = ok; p.y = buf; expect_internal(p, "y aliases x");
  p = ok; p.y = buf + 31; expect_internal(p, "y overlaps the end of x");
  p = ok; p.rows = 1LL << 62; expect_internal(p, "size overflow");
  GegluParams empty;
  empty.rows = 0; empty.f = 3;
  EXPECT_NO_THROW(geglu_ref(empty));
}

}  // namespace
}  // namespace diffrt
