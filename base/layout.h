// NCHW (diffusers, .npy files) <-> NHWC (inside the runtime) conversions at the edges.
#pragma once
#include <vector>

namespace diffrt {

inline std::vector<float> nchw_to_nhwc(const std::vector<float>& x, int n, int c, int h, int w) {
  std::vector<float> y(x.size());
  for (int b = 0; b < n; ++b)
    for (int k = 0; k < c; ++k)
      for (int i = 0; i < h * w; ++i) y[(size_t(b) * h * w + i) * c + k] = x[(size_t(b) * c + k) * h * w + i];
  return y;
}

// y (n*c*h*w floats, caller memory) = x NHWC as NCHW.
inline void nhwc_to_nchw_into(const float* x, int n, int h, int w, int c, float* y) {
  const size_t hw = size_t(h) * size_t(w);
  for (size_t b = 0; b < size_t(n); ++b)
    for (size_t k = 0; k < size_t(c); ++k)
      for (size_t i = 0; i < hw; ++i) y[(b * size_t(c) + k) * hw + i] = x[(b * hw + i) * size_t(c) + k];
}

inline std::vector<float> nhwc_to_nchw(const std::vector<float>& x, int n, int h, int w, int c) {
  std::vector<float> y(x.size());
  nhwc_to_nchw_into(x.data(), n, h, w, c, y.data());
  return y;
}

}  // namespace diffrt
