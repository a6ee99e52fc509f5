// Host scalar math for the sampler plans (contract in sampler_math.h). Written for diffrt from the semantics in
// tests/fixtures/samplers/README.md §D0-§D1 and the numpy / reference-LAPACK algorithms they describe.
// Verified by tests/sampler_schedule_test.cpp (every schedule table of the fixtures) and the loop replays.
#include "runtime/sampler_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "base/error.h"

namespace diffrt::smath {
namespace {

// A float32 operation's result, kept out of any FMA contraction (x86-64 baseline has no FMA, but be explicit).
inline float f32(float v) {
  volatile float r = v;
  return r;
}

}  // namespace

float exp_f(float x) { return float(std::exp(double(x))); }
float log_f(float x) { return float(std::log(double(x))); }
float expm1_f(float x) { return float(std::expm1(double(x))); }

float np_logf(float x) {
  // numpy 1.24's float32 log on AVX2/FMA3 CPUs, as tests/fixtures/samplers/README.md §D0.5 describes it
  // (written here from that description): split x = 2^e * m with m in (sqrt(1/2), sqrt(2)], then
  // log(x) = e*ln2 + P(m-1)/Q(m-1), degree-5 polynomials in Horner form with FMAs. It is not correctly
  // rounded: about 1 in 5 sigma-table values differ from log_f by an ulp, which moves Euler/Heun Karras
  // timesteps by a few ulp. Special values and subnormals fall back to log_f (the tables never meet them).
  if (!(x > 0.0f) || std::isinf(x) || x < std::numeric_limits<float>::min()) return log_f(x);
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  float e = float(int32_t(b >> 23) - 126);
  const uint32_t mb = (b & 0x7fffffu) | 0x3f000000u;
  float m;
  std::memcpy(&m, &mb, sizeof m);  // m in [0.5, 1)
  if (m <= 0.70710678f) {
    m = f32(m + m);
    e = f32(e - 1.0f);
  }
  m = f32(m - 1.0f);
  const float P0 = 0.0f, P1 = float(9.999999999999998702752e-01), P2 = float(2.112677543073053063722e+00),
              P3 = float(1.480000633576506585156e+00), P4 = float(3.808837741388407920751e-01),
              P5 = float(2.589979117907922693523e-02);
  const float Q0 = 1.0f, Q1 = float(2.612677543073109236779e+00), Q2 = float(2.453006071784736363091e+00),
              Q3 = float(9.864942958519418960339e-01), Q4 = float(1.546476374983906719538e-01),
              Q5 = float(5.875095403124574342950e-03);
  float n = std::fma(P5, m, P4);
  n = std::fma(n, m, P3);
  n = std::fma(n, m, P2);
  n = std::fma(n, m, P1);
  n = std::fma(n, m, P0);
  float d = std::fma(Q5, m, Q4);
  d = std::fma(d, m, Q3);
  d = std::fma(d, m, Q2);
  d = std::fma(d, m, Q1);
  d = std::fma(d, m, Q0);
  return std::fma(e, 0.693147180559945309f, f32(n / d));
}

int64_t np_round(double x) {
  // Non-finite or huge values (degenerate trained betas) become a value every range check rejects, without the
  // undefined float -> int conversion.
  const double r = std::nearbyint(x);
  if (!(r > -9.0e18 && r < 9.0e18)) return std::numeric_limits<int64_t>::min();
  return int64_t(r);
}

std::vector<double> np_linspace(double a, double b, int64_t n) {
  std::vector<double> y;
  if (n <= 0) return y;
  y.resize(size_t(n));
  if (n == 1) {
    y[0] = a;
    return y;
  }
  const double step = (b - a) / double(n - 1);
  for (int64_t i = 0; i < n; ++i) {
    volatile double p = double(i) * step;
    y[size_t(i)] = p + a;
  }
  y[size_t(n - 1)] = b;
  return y;
}

std::vector<double> np_arange_down(double start, double step) {
  // numpy: len = ceil((stop - start) / delta) with delta = -step; the fill uses the first two values
  // (start, start + delta) and then start + i * (second - first).
  const double len_d = std::ceil((0.0 - start) / -step);
  std::vector<double> y;
  if (!(len_d > 0)) return y;
  const int64_t len = int64_t(len_d);
  const double second = start + -step;
  const double delta = second - start;
  y.resize(size_t(len));
  for (int64_t i = 0; i < len; ++i) {
    if (i == 0) y[0] = start;
    else if (i == 1) y[1] = second;
    else {
      volatile double p = double(i) * delta;
      y[size_t(i)] = start + p;
    }
  }
  return y;
}

double np_interp_grid(double x, const std::vector<float>& fp) {
  const int64_t n = int64_t(fp.size());
  if (n == 0) fail(ErrorCode::Internal, "np_interp_grid: empty table");
  if (std::isnan(x)) return x;
  if (x >= double(n - 1)) return double(fp[size_t(n - 1)]);
  if (x <= 0.0) return double(fp[0]);
  const int64_t j = int64_t(std::floor(x));
  if (x == double(j)) return double(fp[size_t(j)]);
  const double slope = (double(fp[size_t(j + 1)]) - double(fp[size_t(j)])) / 1.0;
  volatile double p = slope * (x - double(j));
  double r = p + double(fp[size_t(j)]);
  if (std::isnan(r)) {
    volatile double q = slope * (x - double(j + 1));
    r = q + double(fp[size_t(j + 1)]);
  }
  return r;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas, bool sorted) {
  const int64_t T = int64_t(log_sigmas.size());
  if (T < 2) fail(ErrorCode::InvalidArgument, "_sigma_to_t needs at least 2 training timesteps");
  // log_sigma: float64 scalar; against the float32 array numpy 1.24 rounds it to float32 first.
  const float l = float(std::log(std::max(sigma, 1e-10)));
  // low_idx = argmax(cumsum(dists >= 0)): the first index where the running count reaches its maximum.
  int64_t low = 0;
  if (sorted) {
    // Non-decreasing log_sigmas (every beta schedule): dists >= 0 holds on a prefix (float rounding is monotone),
    // so the count of that prefix is found by bisection and low = count - 1 (0 when the prefix is empty).
    int64_t lo = 0, hi = T;  // first index with dists < 0
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (f32(l - log_sigmas[size_t(mid)]) >= 0.0f) lo = mid + 1;
      else hi = mid;
    }
    low = std::max<int64_t>(lo - 1, 0);
  } else {
    int64_t count = 0, best = -1;
    for (int64_t i = 0; i < T; ++i) {
      const float d = f32(l - log_sigmas[size_t(i)]);
      if (d >= 0.0f) ++count;
      if (count > best) { best = count; low = i; }
    }
  }
  low = std::min(low, T - 2);
  const int64_t high = low + 1;
  const float lo = log_sigmas[size_t(low)], hi = log_sigmas[size_t(high)];
  float w = f32(f32(lo - l) / f32(lo - hi));
  w = std::min(std::max(w, 0.0f), 1.0f);  // np.clip
  // (1 - w) * low_idx + w * high_idx: float32 scalars times int64 scalars promote to float64.
  const float one_minus = f32(1.0f - w);
  volatile double a = double(one_minus) * double(low);
  volatile double b = double(w) * double(high);
  return a + b;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
  const double rho = 7.0;
  const std::vector<double> ramp = np_linspace(0.0, 1.0, n);
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> s(ramp.size());
  const double span = min_inv_rho - max_inv_rho;
  for (size_t i = 0; i < ramp.size(); ++i) {
    volatile double p = ramp[i] * span;
    s[i] = std::pow(max_inv_rho + p, rho);
  }
  return s;
}

namespace {

// Column-major n x n matrix helpers for the LAPACK emulation.
struct ColMajor {
  int n;
  std::vector<float> v;  // v[i + j*n] = M(i, j)
  float& at(int i, int j) { return v[size_t(i + j * n)]; }
};

int isamax(ColMajor& a, int r0, int r1, int col) {  // first index of the largest |a(r, col)|, r in [r0, r1)
  int best = r0;
  float bv = std::fabs(a.at(r0, col));
  for (int r = r0 + 1; r < r1; ++r)
    if (std::fabs(a.at(r, col)) > bv) { bv = std::fabs(a.at(r, col)); best = r; }
  return best;
}

void swap_rows(ColMajor& a, int r1, int r2, int c0, int c1) {
  if (r1 == r2) return;
  for (int c = c0; c < c1; ++c) std::swap(a.at(r1, c), a.at(r2, c));
}

// sgetrf2 on the submatrix rows [r0, n), columns [c0, c0 + ncols); ipiv[k] (absolute row) for k in [r0, r0+min).
void sgetrf2(ColMajor& a, int r0, int c0, int ncols, std::vector<int>& ipiv) {
  const int m = a.n - r0;
  if (m == 1) {
    ipiv[size_t(r0)] = r0;
    return;
  }
  if (ncols == 1) {
    const int p = isamax(a, r0, a.n, c0);
    ipiv[size_t(r0)] = p;
    if (a.at(p, c0) != 0.0f) {
      swap_rows(a, r0, p, c0, c0 + 1);
      const float piv = a.at(r0, c0);
      if (std::fabs(piv) >= std::numeric_limits<float>::min()) {
        const float rcp = f32(1.0f / piv);
        for (int r = r0 + 1; r < a.n; ++r) a.at(r, c0) = f32(a.at(r, c0) * rcp);
      } else {
        for (int r = r0 + 1; r < a.n; ++r) a.at(r, c0) = f32(a.at(r, c0) / piv);
      }
    }
    return;
  }
  const int n1 = std::min(m, ncols) / 2;
  const int n2 = ncols - n1;
  // [A11; A21] = P L U
  sgetrf2(a, r0, c0, n1, ipiv);
  // apply the swaps to [A12; A22]
  for (int k = r0; k < r0 + n1; ++k) swap_rows(a, k, ipiv[size_t(k)], c0 + n1, c0 + ncols);
  // A12 = L11^-1 A12 (strsm left, lower, no-trans, unit)
  for (int j = c0 + n1; j < c0 + ncols; ++j)
    for (int k = r0; k < r0 + n1; ++k) {
      const float bk = a.at(k, j);
      if (bk != 0.0f)
        for (int i = k + 1; i < r0 + n1; ++i) a.at(i, j) = f32(a.at(i, j) - f32(bk * a.at(i, c0 + (k - r0))));
    }
  // A22 += (-1) * A21 * A12 (reference sgemm: temp = alpha * B(l, j); C(i, j) += temp * A(i, l))
  for (int j = c0 + n1; j < c0 + ncols; ++j)
    for (int l = 0; l < n1; ++l) {
      const float temp = -a.at(r0 + l, j);
      for (int i = r0 + n1; i < a.n; ++i) a.at(i, j) = f32(a.at(i, j) + f32(temp * a.at(i, c0 + l)));
    }
  // A22 = P2 L22 U22
  sgetrf2(a, r0 + n1, c0 + n1, n2, ipiv);
  // apply the later swaps to the first n1 columns
  for (int k = r0 + n1; k < r0 + std::min(m, ncols); ++k) swap_rows(a, k, ipiv[size_t(k)], c0, c0 + n1);
}

}  // namespace

std::vector<float> lapack_solve(const std::vector<float>& a_rm, const std::vector<float>& b, int n, bool contiguous) {
  if (n < 1 || n > 4 || a_rm.size() != size_t(n * n) || b.size() != size_t(n))
    fail(ErrorCode::Internal, "lapack_solve: bad system size");
  ColMajor m{n, std::vector<float>(size_t(n * n))};
  // contiguous (row-major) A is read by LAPACK as A^T; a non-contiguous A is copied column-major, i.e. A.
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) m.at(i, j) = contiguous ? a_rm[size_t(j * n + i)] : a_rm[size_t(i * n + j)];
  std::vector<int> ipiv(size_t(n), 0);
  sgetrf2(m, 0, 0, n, ipiv);
  std::vector<float> x = b;
  if (contiguous) {
    // Solve (P L U)^T x = b: U^T y = b, L^T z = y, then undo the swaps last to first.
    for (int i = 0; i < n; ++i) {
      float t = x[size_t(i)];
      for (int k = 0; k < i; ++k) t = f32(t - f32(m.at(k, i) * x[size_t(k)]));
      x[size_t(i)] = f32(t / m.at(i, i));
    }
    for (int i = n - 1; i >= 0; --i) {
      float t = x[size_t(i)];
      for (int k = i + 1; k < n; ++k) t = f32(t - f32(m.at(k, i) * x[size_t(k)]));
      x[size_t(i)] = t;
    }
    for (int k = n - 1; k >= 0; --k) std::swap(x[size_t(k)], x[size_t(ipiv[size_t(k)])]);
  } else {
    for (int k = 0; k < n; ++k) std::swap(x[size_t(k)], x[size_t(ipiv[size_t(k)])]);
    for (int k = 0; k < n; ++k)
      if (x[size_t(k)] != 0.0f)
        for (int i = k + 1; i < n; ++i) x[size_t(i)] = f32(x[size_t(i)] - f32(x[size_t(k)] * m.at(i, k)));
    for (int k = n - 1; k >= 0; --k)
      if (x[size_t(k)] != 0.0f) {
        x[size_t(k)] = f32(x[size_t(k)] / m.at(k, k));
        for (int i = 0; i < k; ++i) x[size_t(i)] = f32(x[size_t(i)] - f32(x[size_t(k)] * m.at(i, k)));
      }
  }
  return x;
}

}  // namespace diffrt::smath
