// layer_norm_ref (CPU reference): (1) against torch.nn.functional.layer_norm fixtures in
// tests/fixtures/ops (tests/fixtures/make_op_fixtures.py layer_norm), (2) against a naive long-double
// Welford implementation written here over SD/CLIP and awkward shapes, large means, no-affine and in-place
// calls, (3) its contract (errors, no-ops, thread-count independence), and (4) the CUDA launch policy
// layer_norm_cuda_launch, which is pure host logic and so can be checked without a GPU.
// Outputs are NaN-poisoned and followed by guard elements, so unwritten or out-of-bounds elements fail.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/layer_norm/layer_norm.h"
#include "base/npy.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

NpyArray load(const std::string& name) { return read_npy(test::source_path("tests/fixtures/ops/" + name + ".npy")); }
Vec loadf(const std::string& name) { return load(name).as_f32(); }

using test::random_vec;
// A NaN-poisoned buffer followed by guard elements (init fills the body for in-place calls).
using Out = test::GuardedOut;
using test::expect_close;

// Naive reference: Welford mean/M2 in long double, then (x - mean) * gamma / sqrt(var + eps) + beta.
Vec naive_layer_norm(const Vec& x, long long rows, int c, const float* gamma, const float* beta, float eps) {
  Vec y(x.size());
  for (long long r = 0; r < rows; ++r) {
    long double mean = 0, m2 = 0;
    for (int i = 0; i < c; ++i) {
      const long double v = x[size_t(r) * c + i], d = v - mean;
      mean += d / (i + 1);
      m2 += d * (v - mean);
    }
    const long double den = std::sqrt(m2 / c + static_cast<long double>(eps));
    for (int i = 0; i < c; ++i) {
      long double o = (x[size_t(r) * c + i] - mean) * (gamma ? gamma[i] : 1.0f) / den;
      y[size_t(r) * c + i] = static_cast<float>(o + (beta ? beta[i] : 0.0f));
    }
  }
  return y;
}

// Runs layer_norm_ref out of place or in place on a poisoned, guarded buffer.
Vec run_ref(const Vec& x, long long rows, int c, const float* gamma, const float* beta, float eps, bool in_place,
            const std::string& what) {
  Out y(x.size(), in_place ? &x : nullptr);
  LayerNormParams p;
  p.x = in_place ? y.data() : x.data();
  p.y = y.data();
  p.gamma = gamma;
  p.beta = beta;
  p.rows = rows;
  p.c = c;
  p.eps = eps;
  layer_norm_ref(p);
  EXPECT_TRUE(y.guards_ok()) << what << ": guard overwritten";
  return Vec(y.buf.begin(), y.buf.begin() + long(x.size()));
}

// ---------------------------------------------------------------- fixtures (torch)
TEST(LayerNormFixture, MatchesTorch) {
  const Vec x = loadf("ln_x"), gamma = loadf("ln_gamma"), beta = loadf("ln_beta");
  ASSERT_EQ(x.size(), 2u * 7 * 40);
  for (bool in_place : {false, true}) {
    const std::string tag = in_place ? " (in place)" : "";
    Vec y = run_ref(x, 14, 40, gamma.data(), beta.data(), 1e-5f, in_place, "ln_y");
    const Vec ref = loadf("ln_y");
    expect_close(y.data(), ref.data(), ref.size(), 1e-6, 1e-5, "ln_y" + tag);
    y = run_ref(x, 14, 40, nullptr, nullptr, 1e-6f, in_place, "ln_noaffine_y");
    const Vec ref_na = loadf("ln_noaffine_y");
    expect_close(y.data(), ref_na.data(), ref_na.size(), 1e-6, 1e-5, "ln_noaffine_y" + tag);
  }
}

// C = 33 with a constant last row, and C = 1. Where the variance is 0, x - mean is exactly 0, so the exact
// answer is beta; torch's CPU kernel folds the affine into x * a + (beta - mean * a) with a = rstd * gamma
// (rstd = 1/sqrt(eps) = 316..1000 here) and cancels about 1e-5 of absolute accuracy away. So those rows
// are checked against beta tightly and against torch loosely.
TEST(LayerNormFixture, OddWidthAndZeroVariance) {
  const Vec x = loadf("ln_odd_x"), gamma = loadf("ln_odd_gamma"), beta = loadf("ln_odd_beta"), ref = loadf("ln_odd_y");
  ASSERT_EQ(x.size(), 5u * 33);
  for (bool in_place : {false, true}) {
    const std::string tag = in_place ? " (in place)" : "";
    const Vec y = run_ref(x, 5, 33, gamma.data(), beta.data(), 1e-6f, in_place, "ln_odd");
    expect_close(y.data(), ref.data(), 4 * 33, 1e-6, 1e-5, "ln_odd_y rows 0-3" + tag);
    expect_close(y.data() + 4 * 33, beta.data(), 33, 0.0, 0.0, "ln_odd constant row == beta" + tag);
    expect_close(y.data() + 4 * 33, ref.data() + 4 * 33, 33, 1e-3, 1e-4, "ln_odd constant row vs torch" + tag);
  }
  const Vec x1 = loadf("ln_c1_x"), g1 = loadf("ln_c1_gamma"), b1 = loadf("ln_c1_beta"), r1 = loadf("ln_c1_y");
  const Vec y1 = run_ref(x1, 4, 1, g1.data(), b1.data(), 1e-5f, false, "ln_c1");
  for (float v : y1) EXPECT_EQ(v, b1[0]) << "C = 1 must give beta exactly";
  expect_close(y1.data(), r1.data(), r1.size(), 1e-3, 1e-3, "ln_c1_y vs torch");
}

// ---------------------------------------------------------------- properties (naive long double)
struct Shape {
  long long rows;
  int c;
  float mean;  // offset added to U(-1, 1) * spread
  float spread;
};

TEST(LayerNormRef, MatchesNaiveLongDouble) {
  std::mt19937 rng(11);
  const Shape shapes[] = {
      {1, 1, 0, 1},        {3, 1, 5, 1},       {1, 3, 0, 1},      {77, 33, 0, 2},       {2, 4097, 1, 1},
      {2 * 64, 1280, 0, 3}, {2 * 256, 1280, 0, 1}, {2 * 1024, 640, 0.5f, 1}, {2 * 4096, 320, 0, 1},
      {77, 768, 0, 1},     {154, 1024, 0, 1},  {5, 320, 100, 1},  {4, 1280, 1e4f, 1e-2f}, {9, 40, -3, 0.1f},
  };
  double worst_rel = 0, worst_abs = 0;
  int idx = 0;
  for (const Shape& s : shapes) {
    const size_t n = size_t(s.rows) * s.c;
    Vec x = random_vec(n, rng, -s.spread, s.spread);
    for (float& v : x) v += s.mean;
    const Vec gamma = random_vec(s.c, rng, 0.5f, 1.5f), beta = random_vec(s.c, rng, -0.5f, 0.5f);
    const int affine = idx % 4;  // both, gamma only, beta only, none
    const float* g = affine == 0 || affine == 1 ? gamma.data() : nullptr;
    const float* b = affine == 0 || affine == 2 ? beta.data() : nullptr;
    const float eps = idx % 2 ? 1e-6f : 1e-5f;
    const bool in_place = idx % 3 == 1;
    ++idx;
    const std::string what = "ln " + std::to_string(s.rows) + "x" + std::to_string(s.c) + " mean " +
                             std::to_string(s.mean) + (in_place ? " in place" : "");
    const Vec want = naive_layer_norm(x, s.rows, s.c, g, b, eps);
    const Vec got = run_ref(x, s.rows, s.c, g, b, eps, in_place, what);
    const double rl = test::rel_l2(got.data(), want.data(), n), ma = test::max_abs_diff(got.data(), want.data(), n);
    worst_rel = std::max(worst_rel, rl);
    worst_abs = std::max(worst_abs, ma);
    EXPECT_LE(rl, 1e-7) << what;  // both are exact to fp32 rounding
    EXPECT_LE(ma, 2e-6) << what;
  }
  std::printf("[errors] %-40s worst max_abs=%.3e rel_l2=%.3e\n", "layer_norm_ref vs naive long double", worst_abs,
              worst_rel);
}

// Rows are independent and each row's arithmetic is sequential: any thread count gives the same bits.
TEST(LayerNormRef, ThreadCountInvariant) {
  std::mt19937 rng(12);
  const long long rows = 2 * 1024;
  const int c = 640;
  const Vec x = random_vec(size_t(rows) * c, rng, -2, 3), gamma = random_vec(c, rng, 0.5f, 1.5f),
            beta = random_vec(c, rng, -1, 1);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Vec one = run_ref(x, rows, c, gamma.data(), beta.data(), 1e-5f, false, "1 thread");
  omp_set_num_threads(std::max(2, saved));
  const Vec many = run_ref(x, rows, c, gamma.data(), beta.data(), 1e-5f, false, "many threads");
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)));
}

TEST(LayerNormRef, NanPropagatesWithinItsRowOnly) {
  std::mt19937 rng(13);
  Vec x = random_vec(3 * 16, rng, -1, 1);
  x[16 + 5] = kNaN;
  const Vec y = run_ref(x, 3, 16, nullptr, nullptr, 1e-5f, false, "nan");
  for (int i = 0; i < 16; ++i) {
    EXPECT_FALSE(std::isnan(y[i]));
    EXPECT_TRUE(std::isnan(y[16 + i]));
    EXPECT_FALSE(std::isnan(y[32 + i]));
  }
}

// ---------------------------------------------------------------- contract
TEST(LayerNormRef, RejectsBadArguments) {
  float buf[64] = {};
  auto expect_internal = [](const LayerNormParams& p, const char* what) {
    test::expect_rejected([](const LayerNormParams& q) { layer_norm_ref(q); }, p, ErrorCode::Internal, what);
  };
  LayerNormParams ok;
  ok.x = buf; ok.y = buf + 32; ok.rows = 2; ok.c = 8;
  EXPECT_NO_THROW(layer_norm_ref(ok));
  LayerNormParams p = ok; p.dtype = DType::F16; expect_internal(p, "fp16");
  p = ok; p.dtype = DType::BF16; expect_internal(p, "bf16");
  p = ok; p.c = 0; expect_internal(p, "c = 0");
  p = ok; p.rows = -1; expect_internal(p, "rows < 0");
  p = ok; p.eps = -1e-5f; expect_internal(p, "negative eps");
  p = ok; p.eps = kNaN; expect_internal(p, "NaN eps");
  p = ok; p.eps = std::numeric_limits<float>::infinity(); expect_internal(p, "inf eps");
  p = ok; p.x = nullptr; expect_internal(p, "null x");
  p = ok; p.y = nullptr; expect_internal(p, "null y");
  p = ok; p.rows = (1LL << 62); expect_internal(p, "size overflow");
  // rows = 0 is a no-op, pointers are not touched.
  LayerNormParams empty;
  empty.rows = 0; empty.c = 4;
  EXPECT_NO_THROW(layer_norm_ref(empty));
}

// ---------------------------------------------------------------- CUDA launch policy (host logic)
TEST(LayerNormLaunchPolicy, SdAndClipShapesPickTheIntendedPaths) {
  alignas(16) static float buf[64];
  LayerNormParams p;
  p.x = p.gamma = p.beta = buf;
  p.y = buf;
  p.rows = 8192;
  struct Want { int c; DType t; LayerNormPath path; int vec, vpt, threads; };
  const Want wants[] = {
      {320, DType::F16, LayerNormPath::Warp, 8, 2, 32},    {320, DType::F32, LayerNormPath::Warp, 4, 4, 32},
      {640, DType::F16, LayerNormPath::Warp, 8, 4, 32},    {640, DType::F32, LayerNormPath::Warp, 4, 8, 32},
      {768, DType::BF16, LayerNormPath::Warp, 8, 4, 32},   {1024, DType::F32, LayerNormPath::Warp, 4, 8, 32},
      {1280, DType::F16, LayerNormPath::Block, 8, 1, 160}, {1280, DType::F32, LayerNormPath::Block, 4, 2, 160},
      {33, DType::F32, LayerNormPath::Warp, 1, 2, 32},     {1, DType::F16, LayerNormPath::Warp, 1, 1, 32},
      {4097, DType::F32, LayerNormPath::Streamed, 1, 0, 512}, {4096, DType::F32, LayerNormPath::Block, 4, 4, 256},
      {40000, DType::F16, LayerNormPath::Streamed, 8, 0, 512},
  };
  for (const Want& w : wants) {
    p.c = w.c;
    p.dtype = w.t;
    const LayerNormLaunch l = layer_norm_cuda_launch(p);
    const std::string what = "C=" + std::to_string(w.c) + " " + dtype_name(w.t);
    EXPECT_EQ(l.path, w.path) << what << " got " << layer_norm_path_name(l.path);
    EXPECT_EQ(l.vec, w.vec) << what;
    EXPECT_EQ(l.vecs_per_thread, w.vpt) << what;
    EXPECT_EQ(l.threads_per_row, w.threads) << what;
  }
  // Misaligned pointers (an element past a 16-byte boundary) force scalar accesses.
  p.c = 320;
  p.dtype = DType::F16;
  p.gamma = reinterpret_cast<const char*>(buf) + 2;
  EXPECT_EQ(layer_norm_cuda_launch(p).vec, 1);
  p.gamma = nullptr;  // null gamma/beta do not block vectorisation
  p.beta = nullptr;
  EXPECT_EQ(layer_norm_cuda_launch(p).vec, 8);
}

// For every C up to a few thousand, dtype and alignment: the cached paths cover the row exactly once, block
// sizes are legal warp multiples, and the vector width divides C.
TEST(LayerNormLaunchPolicy, InvariantsOverManyWidths) {
  alignas(16) static char buf[64];
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int misalign : {0, 1})
      for (int c = 1; c <= 20000; c += (c < 2100 ? 1 : 97)) {
        LayerNormParams p;
        p.x = p.gamma = p.beta = buf;
        p.y = buf + misalign * dtype_size(t);
        p.rows = 3;
        p.c = c;
        p.dtype = t;
        const LayerNormLaunch l = layer_norm_cuda_launch(p);
        const std::string what = "C=" + std::to_string(c) + " " + dtype_name(t) + " misalign " + std::to_string(misalign);
        ASSERT_TRUE(l.vec == 1 || l.vec == int(16 / dtype_size(t))) << what;
        ASSERT_EQ(c % l.vec, 0) << what;
        if (misalign) {
          ASSERT_EQ(l.vec, 1) << what;
        }
        ASSERT_EQ(l.threads_per_row % 32, 0) << what;
        ASSERT_LE(l.threads_per_row * l.rows_per_block, 512) << what;
        const int nvec = c / l.vec;
        if (l.path != LayerNormPath::Streamed) {
          ASSERT_GE(l.threads_per_row * l.vecs_per_thread, nvec) << what;            // covers the row
          ASSERT_LT((l.threads_per_row - 32) * l.vecs_per_thread, nvec) << what;     // no idle warp
          ASSERT_TRUE(l.vecs_per_thread == 1 || l.vecs_per_thread == 2 || l.vecs_per_thread == 4 ||
                      l.vecs_per_thread == 8) << what;
        }
        if (l.path == LayerNormPath::Warp) {
          ASSERT_LE(c, 1024) << what;
        } else {
          ASSERT_EQ(l.rows_per_block, 1) << what;
        }
      }
}

}  // namespace
}  // namespace diffrt
