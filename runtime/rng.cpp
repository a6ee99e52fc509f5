// torch-compatible CPU randn and Philox fill helpers (contract in rng.h).
// Tested by tests/rng_test.cpp against torch 1.13 outputs saved by
// tests/fixtures/make_scheduler_fixtures.py.
#include "runtime/rng.h"

#include <cmath>

#include "base/error.h"
#include "kernels/common/philox.h"

namespace diffrt {

void TorchGenerator::manual_seed(uint64_t seed) {
  engine_.seed(uint32_t(seed & 0xffffffffu));
  has_cached_normal_ = false;
  cached_normal_ = 0.0;
}

double TorchGenerator::next_uniform_f64() {
  const uint64_t hi = next_u32();
  const uint64_t lo = next_u32();
  const uint64_t v = ((hi << 32) | lo) & ((uint64_t(1) << 53) - 1);
  return double(v) * (1.0 / double(uint64_t(1) << 53));
}

void TorchGenerator::randn(float* out, size_t n) {
  if (n == 0) return;
  if (n < 16) {
    for (size_t i = 0; i < n; ++i) {
      if (has_cached_normal_) {
        has_cached_normal_ = false;
        out[i] = float(cached_normal_);
        continue;
      }
      const double u1 = next_uniform_f64();
      const double u2 = next_uniform_f64();
      const double r = std::sqrt(-2.0 * std::log(1.0 - u2));
      const double theta = 2.0 * M_PI * u1;
      cached_normal_ = r * std::sin(theta);
      has_cached_normal_ = true;
      out[i] = float(r * std::cos(theta));
    }
    return;
  }
  auto uniform = [this]() { return float(next_u32() & 0xFFFFFFu) * 0x1p-24f; };
  for (size_t i = 0; i < n; ++i) out[i] = uniform();
  const float two_pi = float(2.0 * M_PI);
  auto fill16 = [two_pi](float* d) {
    for (int j = 0; j < 8; ++j) {
      const float u1 = 1.0f - d[j];
      const float u2 = d[j + 8];
      const float radius = std::sqrt(-2.0f * std::log(u1));
      const float theta = two_pi * u2;
      d[j] = radius * std::cos(theta);
      d[j + 8] = radius * std::sin(theta);
    }
  };
  for (size_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
  if (n % 16 != 0) {
    float* tail = out + n - 16;
    for (int j = 0; j < 16; ++j) tail[j] = uniform();
    fill16(tail);
  }
}

std::vector<float> TorchGenerator::randn(size_t n) {
  std::vector<float> v(n);
  randn(v.data(), n);
  return v;
}

void fill_philox_normal(uint64_t seed, uint32_t sample, uint32_t step, uint32_t tag, int h, int w,
                        int c, float* out) {
  const uint64_t hw = uint64_t(h) * uint64_t(w);
  if (h <= 0 || w <= 0 || c <= 0 || hw * uint64_t(c) > 0xffffffffull)
    fail(ErrorCode::InvalidArgument, "fill_philox_normal: bad shape h=" + std::to_string(h) +
                                         " w=" + std::to_string(w) + " c=" + std::to_string(c));
  const uint64_t n = hw * uint64_t(c);
  float four[4];
  for (uint64_t e = 0; e < n; e += 4) {  // e: NCHW element index
    philox::normal4(seed, sample, step, tag, uint32_t(e >> 2), four);
    for (uint64_t k = 0; k < 4 && e + k < n; ++k) {
      const uint64_t idx = e + k;
      const uint64_t ch = idx / hw, pix = idx % hw;
      out[pix * uint64_t(c) + ch] = four[k];
    }
  }
}

std::vector<float> torch_randn_nchw_to_nhwc(TorchGenerator& gen, int b, int c, int h, int w) {
  const size_t hw = size_t(h) * size_t(w), per = hw * size_t(c);
  std::vector<float> nchw = gen.randn(size_t(b) * per), nhwc(nchw.size());
  for (int n = 0; n < b; ++n)
    for (int ch = 0; ch < c; ++ch)
      for (size_t p = 0; p < hw; ++p) nhwc[n * per + p * c + ch] = nchw[n * per + ch * hw + p];
  return nhwc;
}

}  // namespace diffrt
