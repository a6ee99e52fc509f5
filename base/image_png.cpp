#include "base/image_png.h"

#include <png.h>

#include <cmath>
#include <csetjmp>
#include <cstring>

#include "base/error.h"
#include "base/atomic_file.h"

namespace diffrt {

namespace {

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* err = static_cast<std::string*>(png_get_error_ptr(png));
  *err = msg;
  png_longjmp(png, 1);
}
void png_warn_fn(png_structp, png_const_charp) {}
void png_write_fn(png_structp png, png_bytep data, png_size_t len) {
  auto* out = static_cast<std::vector<unsigned char>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + len);
}

unsigned char to_u8(float v) {
  if (!(v >= 0.0f)) v = 0.0f;  // also maps NaN to 0
  if (v > 1.0f) v = 1.0f;
  return static_cast<unsigned char>(std::nearbyint(v * 255.0f));  // half to even, as numpy
}

// libpng reports errors by longjmp back to the setjmp below: this frame holds no C++ objects and
// modifies no locals after setjmp, so the jump skips no destructor and clobbers nothing.
bool encode_rows(png_structp png, png_infop info, png_uint_32 w, png_uint_32 h, int color, png_textp texts,
                 int ntexts, png_bytepp rows, std::vector<unsigned char>* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, png_write_fn, nullptr);
  png_set_IHDR(png, info, w, h, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (ntexts > 0) png_set_text(png, info, texts, ntexts);
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

}  // namespace

std::vector<unsigned char> encode_png_grid(const float* images, int n, int h, int w, int c, int cols,
                                           const std::vector<std::pair<std::string, std::string>>& text) {
  if (n < 1 || h < 1 || w < 1 || (c != 1 && c != 3 && c != 4))
    fail(ErrorCode::InvalidArgument, "PNG output needs 1, 3 or 4 channels, got " + std::to_string(c) +
                                         " (write .npy instead)");
  if (cols <= 0) cols = int(std::ceil(std::sqrt(double(n))));
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols, pad = n > 1 ? 2 : 0;
  const long long gw = (long long)cols * w + (long long)(cols - 1) * pad;
  const long long gh = (long long)rows * h + (long long)(rows - 1) * pad;
  if (gw > 65535 || gh > 65535) fail(ErrorCode::InvalidArgument, "image grid too large for PNG output");
  std::vector<unsigned char> pixels(size_t(gw * gh * c), 0);
  for (int i = 0; i < n; ++i) {
    long long ox = (long long)(i % cols) * (w + pad), oy = (long long)(i / cols) * (h + pad);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k)
          pixels[size_t(((oy + y) * gw + ox + x) * c + k)] = to_u8(images[((size_t(i) * h + y) * w + x) * c + k]);
  }

  std::vector<png_bytep> row_ptrs(static_cast<size_t>(gh));
  for (long long y = 0; y < gh; ++y) row_ptrs[size_t(y)] = pixels.data() + size_t(y * gw * c);
  std::vector<png_text> texts(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    std::memset(&texts[i], 0, sizeof(png_text));
    texts[i].compression = PNG_TEXT_COMPRESSION_NONE;
    texts[i].key = const_cast<char*>(text[i].first.c_str());
    texts[i].text = const_cast<char*>(text[i].second.c_str());
    texts[i].text_length = text[i].second.size();
  }
  const int color = c == 1 ? PNG_COLOR_TYPE_GRAY : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;

  std::vector<unsigned char> out;
  std::string err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warn_fn);
  if (!png) fail(ErrorCode::OutOfMemory, "libpng: cannot create write struct");
  png_infop info = png_create_info_struct(png);
  const bool ok = info && encode_rows(png, info, png_uint_32(gw), png_uint_32(gh), color, texts.data(),
                                      int(texts.size()), row_ptrs.data(), &out);
  png_destroy_write_struct(&png, &info);
  if (!ok) fail(ErrorCode::Io, "PNG encoding failed: " + (err.empty() ? std::string("out of memory") : err));
  return out;
}

void write_png_grid(const std::string& path, const float* images, int n, int h, int w, int c, int cols,
                    const std::vector<std::pair<std::string, std::string>>& text) {
  auto bytes = encode_png_grid(images, n, h, w, c, cols, text);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace diffrt
