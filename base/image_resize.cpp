// PIL-exact Lanczos, torch-exact nearest and PIL's RGB -> L (contracts in image_resize.h).
#include "base/image_resize.h"

#include <cmath>
#include <string>

#include "base/error.h"

namespace diffrt {

namespace {

constexpr int kPrecisionBits = 22;  // fraction bits of the fixed-point weights

double sinc(double t) {
  if (t == 0.0) return 1.0;
  const double x = t * M_PI;
  return std::sin(x) / x;
}

double lanczos3(double t) { return (t >= -3.0 && t < 3.0) ? sinc(t) * sinc(t / 3.0) : 0.0; }

// One axis: for each output index, the first input index and its fixed-point weights.
struct AxisCoeffs {
  int taps = 0;                 // weights per output index (the widest window)
  std::vector<int> first, count;
  std::vector<int32_t> k;       // [out, taps]
};

AxisCoeffs axis_coeffs(int in, int out) {
  const double scale = double(in) / double(out);
  const double fs = scale < 1.0 ? 1.0 : scale;
  const double support = 3.0 * fs;
  AxisCoeffs a;
  a.taps = int(std::ceil(support)) * 2 + 1;
  a.first.resize(size_t(out));
  a.count.resize(size_t(out));
  a.k.assign(size_t(out) * size_t(a.taps), 0);
  std::vector<double> wd(size_t(a.taps));
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    int lo = int(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = int(center + support + 0.5);
    if (hi > in) hi = in;
    const int cnt = hi - lo;
    double sum = 0.0;
    for (int j = 0; j < cnt; ++j) {
      wd[size_t(j)] = lanczos3((j + lo - center + 0.5) / fs);
      sum += wd[size_t(j)];
    }
    for (int j = 0; j < cnt; ++j) {
      double v = sum != 0.0 ? wd[size_t(j)] / sum : wd[size_t(j)];
      v *= double(1 << kPrecisionBits);
      a.k[size_t(i) * size_t(a.taps) + size_t(j)] = int32_t(v < 0.0 ? v - 0.5 : v + 0.5);
    }
    a.first[size_t(i)] = lo;
    a.count[size_t(i)] = cnt;
  }
  return a;
}

uint8_t clip8(int64_t acc) {
  const int64_t v = acc >> kPrecisionBits;  // arithmetic shift: negative sums clip to 0
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Resamples along x: src [rows, w, c] -> [rows, ow, c].
std::vector<uint8_t> pass_x(const uint8_t* src, int rows, int w, int c, int ow) {
  const AxisCoeffs a = axis_coeffs(w, ow);
  std::vector<uint8_t> out(size_t(rows) * size_t(ow) * size_t(c));
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < ow; ++x) {
      const int32_t* k = &a.k[size_t(x) * size_t(a.taps)];
      for (int ch = 0; ch < c; ++ch) {
        int64_t acc = int64_t(1) << (kPrecisionBits - 1);
        for (int j = 0; j < a.count[size_t(x)]; ++j)
          acc += int64_t(src[(size_t(y) * size_t(w) + size_t(a.first[size_t(x)] + j)) * size_t(c) + size_t(ch)]) * k[j];
        out[(size_t(y) * size_t(ow) + size_t(x)) * size_t(c) + size_t(ch)] = clip8(acc);
      }
    }
  return out;
}

// Resamples along y: src [rows, w, c] holding input rows row0.. -> [oh, w, c] with the coefficients `a`.
std::vector<uint8_t> pass_y(const uint8_t* src, int row0, int w, int c, const AxisCoeffs& a, int oh) {
  std::vector<uint8_t> out(size_t(oh) * size_t(w) * size_t(c));
  const size_t row = size_t(w) * size_t(c);
  for (int y = 0; y < oh; ++y) {
    const int32_t* k = &a.k[size_t(y) * size_t(a.taps)];
    for (size_t e = 0; e < row; ++e) {
      int64_t acc = int64_t(1) << (kPrecisionBits - 1);
      for (int j = 0; j < a.count[size_t(y)]; ++j)
        acc += int64_t(src[size_t(a.first[size_t(y)] + j - row0) * row + e]) * k[j];
      out[size_t(y) * row + e] = clip8(acc);
    }
  }
  return out;
}

void check_dims(const char* what, int h, int w, int c) {
  if (h < 1 || w < 1 || c < 1 || h > 65535 || w > 65535 || c > 4)
    fail(ErrorCode::InvalidArgument, std::string(what) + ": bad image size " + std::to_string(h) + "x" +
                                         std::to_string(w) + "x" + std::to_string(c));
}

}  // namespace

std::vector<uint8_t> resize_lanczos_u8(const uint8_t* src, int h, int w, int c, int oh, int ow) {
  check_dims("resize_lanczos_u8 (input)", h, w, c);
  check_dims("resize_lanczos_u8 (output)", oh, ow, c);
  if (oh == h && ow == w) return std::vector<uint8_t>(src, src + size_t(h) * size_t(w) * size_t(c));
  if (oh == h) return pass_x(src, h, w, c, ow);
  const AxisCoeffs ay = axis_coeffs(h, oh);
  if (ow == w) return pass_y(src, 0, w, c, ay, oh);
  // The horizontal pass covers only the source rows the vertical pass reads.
  const int row0 = ay.first.front();
  const int row1 = ay.first.back() + ay.count.back();
  const std::vector<uint8_t> tmp = pass_x(src + size_t(row0) * size_t(w) * size_t(c), row1 - row0, w, c, ow);
  return pass_y(tmp.data(), row0, ow, c, ay, oh);
}

int nearest_source_index(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = float(in) / float(out);
  const int src = int(std::floor(float(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

std::vector<float> resize_nearest_nhwc(const float* x, int n, int h, int w, int c, int oh, int ow) {
  std::vector<float> y(size_t(n) * size_t(oh) * size_t(ow) * size_t(c));
  std::vector<int> sx(static_cast<size_t>(ow));
  for (int j = 0; j < ow; ++j) sx[size_t(j)] = nearest_source_index(j, w, ow);
  for (int b = 0; b < n; ++b)
    for (int i = 0; i < oh; ++i) {
      const int si = nearest_source_index(i, h, oh);
      for (int j = 0; j < ow; ++j) {
        const float* s = x + ((size_t(b) * size_t(h) + size_t(si)) * size_t(w) + size_t(sx[size_t(j)])) * size_t(c);
        float* d = y.data() + ((size_t(b) * size_t(oh) + size_t(i)) * size_t(ow) + size_t(j)) * size_t(c);
        for (int k = 0; k < c; ++k) d[k] = s[k];
      }
    }
  return y;
}

std::vector<uint8_t> rgb_to_l_u8(const uint8_t* rgb, size_t pixels) {
  std::vector<uint8_t> l(pixels);
  for (size_t i = 0; i < pixels; ++i)
    l[i] = uint8_t((uint32_t(rgb[3 * i]) * 19595u + uint32_t(rgb[3 * i + 1]) * 38470u + uint32_t(rgb[3 * i + 2]) * 7471u +
                    0x8000u) >> 16);
  return l;
}

}  // namespace diffrt
