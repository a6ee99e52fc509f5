// CPU reference activations (formulas in activation.h), evaluated in double and rounded once to fp32.
// gelu uses erfc(-x/sqrt 2) and gelu_tanh x sigmoid(2z) (= 0.5 x (1 + tanh z)) so large negative x keep
// their relative accuracy (1 + erf and 1 + tanh would cancel to 0).
// Tested by tests/activation_test.cpp against the formulas in long double and torch-style edge values
// (0, +-inf, NaN propagation, huge |x|).
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/activation/activation.h"
#include "base/error.h"

namespace diffrt {

const char* activation_name(ActivationKind k) {
  switch (k) {
    case ActivationKind::Gelu: return "gelu";
    case ActivationKind::GeluTanh: return "gelu_tanh";
    case ActivationKind::QuickGelu: return "quick_gelu";
  }
  return "?";
}

bool parse_activation(const std::string& name, ActivationKind* out) {
  for (ActivationKind k : {ActivationKind::Gelu, ActivationKind::GeluTanh, ActivationKind::QuickGelu})
    if (name == activation_name(k)) {
      *out = k;
      return true;
    }
  return false;
}

namespace {

template <ActivationKind K>
inline float act(float xf) {
  const double x = xf;
  if constexpr (K == ActivationKind::Gelu) {
    return static_cast<float>(0.5 * x * std::erfc(-x * 0.70710678118654752440));
  } else if constexpr (K == ActivationKind::GeluTanh) {
    // 0.5 x (1 + tanh z) = x sigmoid(2 z): the same function without 1 + tanh z cancelling for x << 0.
    const double z = 0.79788456080286535588 * (x + 0.044715 * x * x * x);  // sqrt(2/pi) (x + 0.044715 x^3)
    return static_cast<float>(x / (1.0 + std::exp(-2.0 * z)));
  } else {
    // x * sigmoid(1.702 x) = x / (1 + exp(-1.702 x)); exp overflow gives x / inf = -0 for x << 0.
    return static_cast<float>(x / (1.0 + std::exp(-1.702 * x)));
  }
}

template <ActivationKind K>
void run(const float* x, float* y, long long n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long long i = 0; i < n; ++i) y[i] = act<K>(x[i]);
}

}  // namespace

void activation_ref(const ActivationParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("activation_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.count >= 0, ErrorCode::Internal, "activation_ref: negative count");
  if (p.count == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::Internal, "activation_ref: null pointer");
  const float* x = static_cast<const float*>(p.x);  // x: [count]
  float* y = static_cast<float*>(p.y);              // y: [count]; may alias x (element i read before written)
  switch (p.kind) {
    case ActivationKind::Gelu: run<ActivationKind::Gelu>(x, y, p.count); break;
    case ActivationKind::GeluTanh: run<ActivationKind::GeluTanh>(x, y, p.count); break;
    case ActivationKind::QuickGelu: run<ActivationKind::QuickGelu>(x, y, p.count); break;
    default: fail(ErrorCode::Internal, "activation_ref: bad kind");
  }
}

}  // namespace diffrt
