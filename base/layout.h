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

inline std::vector<float> nhwc_to_nchw(const std::vector<float>& x, int n, int h, int w, int c) {
  std::vector<float> y(x.size());
  for (int b = 0; b < n; ++b)
    for (int k = 0; k < c; ++k)
      for (int i = 0; i < h * w; ++i) y[(size_t(b) * c + k) * h * w + i] = x[(size_t(b) * h * w + i) * c + k];
  return y;
}

}  // namespace diffrt
