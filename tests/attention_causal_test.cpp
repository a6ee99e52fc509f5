// attention_ref with causal = true (key j > query i masked) vs a naive double-precision loop over the
// visible keys only: CLIP text-encoder shapes (77 tokens, heads of 64 and 8), lengths around the 64-row
// query blocks, a fused QKV buffer (row stride 3C), Lq != Lkv, thread counts 1..3, and values of 1e30 in
// the V rows a query must not see (masked probabilities must be exactly 0, not merely tiny).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"
#include "tests/test_util.h"

namespace diffrt::test {
namespace {

struct Shape {
  int b, h, lq, lkv, d;
};

// o[b, i, h*D..] over keys j <= i (all keys when !causal), in double.
std::vector<float> naive(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                         const Shape& s, int ldq, int ldk, int ldv, float scale, bool causal) {
  const int hd = s.h * s.d;
  std::vector<float> o(size_t(s.b) * s.lq * hd);
  for (int b = 0; b < s.b; ++b)
    for (int h = 0; h < s.h; ++h)
      for (int i = 0; i < s.lq; ++i) {
        const int kend = causal ? std::min(s.lkv, i + 1) : s.lkv;
        std::vector<double> sc(static_cast<size_t>(kend));
        double mx = -1e300;
        for (int j = 0; j < kend; ++j) {
          double acc = 0;
          for (int e = 0; e < s.d; ++e)
            acc += double(q[(size_t(b) * s.lq + i) * ldq + h * s.d + e]) * k[(size_t(b) * s.lkv + j) * ldk + h * s.d + e];
          sc[size_t(j)] = acc * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - mx));
        for (int e = 0; e < s.d; ++e) {
          double acc = 0;
          for (int j = 0; j < kend; ++j) acc += sc[size_t(j)] / sum * v[(size_t(b) * s.lkv + j) * ldv + h * s.d + e];
          o[(size_t(b) * s.lq + i) * hd + h * s.d + e] = float(acc);
        }
      }
  return o;
}

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& e : x) e = d(rng);
  return x;
}

// Separate q/k/v buffers; `poison_hidden` puts 1e30 in V rows beyond the last query (never visible when
// lkv > lq) and checks that they do not leak.
void check(const Shape& s, bool causal, int threads, bool poison_hidden = false) {
  const int hd = s.h * s.d;
  std::vector<float> q = randn(size_t(s.b) * s.lq * hd, 1u + s.lq), k = randn(size_t(s.b) * s.lkv * hd, 2u + s.d),
                     v = randn(size_t(s.b) * s.lkv * hd, 3u + s.h);
  for (float& x : q) x *= 2.0f;  // peaked softmax rows
  if (poison_hidden)
    for (int b = 0; b < s.b; ++b)
      for (int j = s.lq; j < s.lkv; ++j)
        for (int c = 0; c < hd; ++c) v[(size_t(b) * s.lkv + j) * hd + c] = 1e30f;
  std::vector<float> o(size_t(s.b) * s.lq * hd, NAN);
  AttentionParams p;
  p.q = q.data(); p.k = k.data(); p.v = v.data(); p.o = o.data();
  p.batch = s.b; p.heads = s.h; p.lq = s.lq; p.lkv = s.lkv; p.head_dim = s.d;
  p.ldq = p.ldk = p.ldv = p.ldo = hd;
  p.scale = 1.0f / std::sqrt(float(s.d));
  p.causal = causal;
  omp_set_num_threads(threads);
  attention_ref(p);
  const std::vector<float> want = naive(q, k, v, s, hd, hd, hd, p.scale, causal);
  const double e = rel_l2(o.data(), want.data(), o.size());
  EXPECT_LT(e, 2e-6) << "b=" << s.b << " h=" << s.h << " lq=" << s.lq << " lkv=" << s.lkv << " d=" << s.d
                     << " causal=" << causal << " threads=" << threads;
}

TEST(AttentionCausalRef, MatchesNaive) {
  const Shape shapes[] = {{1, 4, 77, 77, 8},  {2, 12, 77, 77, 64}, {1, 1, 1, 1, 16},   {2, 3, 5, 5, 7},
                          {1, 2, 64, 64, 32}, {1, 2, 65, 65, 32},  {1, 2, 130, 130, 40}, {2, 2, 200, 200, 20},
                          {1, 16, 77, 77, 64}};
  for (int threads : {1, 2, 3})
    for (const Shape& s : shapes) {
      check(s, true, threads);
      if (threads == 2) check(s, false, threads);  // the flag off leaves plain attention
    }
}

TEST(AttentionCausalRef, QueryAndKeyLengthsDiffer) {
  // Top-left alignment: query i sees keys [0, min(i, Lkv - 1)].
  for (int threads : {1, 3}) {
    check({1, 2, 77, 20, 16}, true, threads);
    check({2, 2, 20, 77, 16}, true, threads, /*poison_hidden=*/true);
    check({1, 1, 130, 3, 8}, true, threads);
  }
}

TEST(AttentionCausalRef, FusedQkvLayout) {
  const Shape s{2, 4, 77, 77, 8};
  const int C = s.h * s.d;
  std::vector<float> qkv = randn(size_t(s.b) * s.lq * 3 * C, 99);
  std::vector<float> o(size_t(s.b) * s.lq * C, NAN);
  AttentionParams p;
  p.q = qkv.data(); p.k = qkv.data() + C; p.v = qkv.data() + 2 * C; p.o = o.data();
  p.batch = s.b; p.heads = s.h; p.lq = s.lq; p.lkv = s.lkv; p.head_dim = s.d;
  p.ldq = p.ldk = p.ldv = 3 * C;
  p.ldo = C;
  p.scale = 0.35f;
  p.causal = true;
  omp_set_num_threads(2);
  attention_ref(p);
  std::vector<float> q(size_t(s.b) * s.lq * C), k(q.size()), v(q.size());
  for (size_t r = 0; r < size_t(s.b) * s.lq; ++r)
    for (int c = 0; c < C; ++c) {
      q[r * C + c] = qkv[r * 3 * C + c];
      k[r * C + c] = qkv[r * 3 * C + C + c];
      v[r * C + c] = qkv[r * 3 * C + 2 * C + c];
    }
  const std::vector<float> want = naive(q, k, v, s, C, C, C, p.scale, true);
  EXPECT_LT(rel_l2(o.data(), want.data(), o.size()), 2e-6);
  // Row 0 of each head equals V row 0 exactly (only key 0 is visible).
  for (int b = 0; b < s.b; ++b)
    for (int c = 0; c < C; ++c) EXPECT_FLOAT_EQ(o[size_t(b) * s.lq * C + c], v[size_t(b) * s.lq * C + c]);
}

}  // namespace
}  // namespace diffrt::test
