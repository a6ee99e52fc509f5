// activation_ref (gelu, gelu_tanh, quick_gelu) vs the formulas in long double over a dense sweep of
// [-30, 30], random values and edge values; known values; in place; NaN propagation; name parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/activation/activation.h"
#include "base/error.h"

namespace diffrt::test {
namespace {

long double formula(ActivationKind k, long double x) {
  switch (k) {
    case ActivationKind::Gelu: return 0.5L * x * std::erfc(-x / std::sqrt(2.0L));
    case ActivationKind::GeluTanh: {  // 0.5 x (1 + tanh z) = x sigmoid(2 z), without the cancellation
      const long double z = std::sqrt(2.0L / 3.14159265358979323846264338327950288L) * (x + 0.044715L * x * x * x);
      return x / (1.0L + std::exp(-2.0L * z));
    }
    case ActivationKind::QuickGelu: return x / (1.0L + std::exp(-1.702L * x));
  }
  return 0;
}

constexpr ActivationKind kKinds[] = {ActivationKind::Gelu, ActivationKind::GeluTanh, ActivationKind::QuickGelu};

std::vector<float> run(ActivationKind k, const std::vector<float>& x) {
  std::vector<float> y(x.size(), NAN);
  ActivationParams p;
  p.x = x.data(); p.y = y.data(); p.count = (long long)x.size(); p.kind = k;
  activation_ref(p);
  return y;
}

TEST(ActivationRef, MatchesFormula) {
  std::vector<float> x;
  for (int i = -300000; i <= 300000; ++i) x.push_back(float(i) * 1e-4f);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int i = 0; i < 100000; ++i) x.push_back(nd(rng));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 80.0f, -80.0f, 1e10f, -1e10f, 3.4e38f, -3.4e38f})
    x.push_back(v);
  for (ActivationKind k : kKinds) {
    const std::vector<float> y = run(k, x);
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const long double want = formula(k, x[i]);
      const long double err = std::fabs((long double)y[i] - want);
      // One rounding to fp32 (0.5 ulp) plus the double evaluation: within 1 ulp of the exact value.
      const long double ulp = std::max<long double>(std::fabs(want) * 1.2e-7L, 1.5e-45L);
      if (!(err <= ulp) && !(std::isinf(want) && y[i] == float(want)) && ++bad <= 5)
        ADD_FAILURE() << activation_name(k) << "(" << x[i] << ") = " << y[i] << ", want " << (double)want;
    }
    EXPECT_EQ(bad, 0u) << activation_name(k);
  }
}

TEST(ActivationRef, KnownValues) {
  // gelu(1) = Phi(1); gelu_tanh(1) and quick_gelu(1) = sigmoid(1.702) from the formulas in double.
  const std::vector<float> one = {1.0f, -1.0f, 0.0f};
  const std::vector<float> g = run(ActivationKind::Gelu, one), t = run(ActivationKind::GeluTanh, one),
                           q = run(ActivationKind::QuickGelu, one);
  EXPECT_FLOAT_EQ(g[0], 0.841344746068542948f);
  EXPECT_FLOAT_EQ(g[1], -0.158655253931457052f);
  EXPECT_FLOAT_EQ(t[0], 0.841191990608276794f);
  EXPECT_FLOAT_EQ(q[0], 0.8457957659328212f);
  EXPECT_FLOAT_EQ(q[1], -0.1542042340671787f);
  for (const auto* v : {&g, &t, &q}) EXPECT_EQ((*v)[2], 0.0f);
}

TEST(ActivationRef, InPlaceAndNaN) {
  for (ActivationKind k : kKinds) {
    std::vector<float> x = {-2.5f, -0.5f, 0.25f, 3.0f, std::numeric_limits<float>::quiet_NaN()};
    const std::vector<float> want = run(k, x);
    ActivationParams p;
    p.x = x.data(); p.y = x.data(); p.count = (long long)x.size(); p.kind = k;
    activation_ref(p);
    for (size_t i = 0; i + 1 < x.size(); ++i) EXPECT_EQ(x[i], want[i]);
    EXPECT_TRUE(std::isnan(x.back())) << activation_name(k) << " must propagate NaN";
  }
}

TEST(ActivationRef, NamesAndArguments) {
  for (ActivationKind k : kKinds) {
    ActivationKind back;
    ASSERT_TRUE(parse_activation(activation_name(k), &back));
    EXPECT_EQ(back, k);
  }
  ActivationKind unused;
  EXPECT_FALSE(parse_activation("relu", &unused));
  EXPECT_FALSE(parse_activation("", &unused));
  ActivationParams p;
  p.count = 0;
  EXPECT_NO_THROW(activation_ref(p));  // empty: no pointers needed
  p.count = -1;
  EXPECT_THROW(activation_ref(p), Error);
  p.count = 4;
  EXPECT_THROW(activation_ref(p), Error);  // null pointers
  float buf[4] = {};
  p.x = p.y = buf;
  p.dtype = DType::F16;
  EXPECT_THROW(activation_ref(p), Error);
}

}  // namespace
}  // namespace diffrt::test
