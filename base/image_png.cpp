#include "base/image_png.h"

#include <png.h>

#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <fstream>

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

// ---- reading ----------------------------------------------------------------------------------------------

namespace {

struct MemReader {
  const uint8_t* data;
  size_t size, pos;
};

void png_read_fn(png_structp png, png_bytep out, png_size_t len) {
  auto* r = static_cast<MemReader*>(png_get_io_ptr(png));
  if (len > r->size - r->pos) png_error(png, "file truncated");
  std::memcpy(out, r->data + r->pos, len);
  r->pos += len;
}

struct PngHeader {
  png_uint_32 width, height;
  int bit_depth, color_type;
};

// As encode_rows: no C++ objects live in these frames, so libpng's longjmp skips no destructor.
bool read_header(png_structp png, png_infop info, MemReader* reader, png_uint_32 max_side, PngHeader* hdr) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, reader, png_read_fn);
  png_set_user_limits(png, max_side, max_side);  // checked against IHDR before any pixel is decompressed
  png_read_info(png, info);
  png_get_IHDR(png, info, &hdr->width, &hdr->height, &hdr->bit_depth, &hdr->color_type, nullptr, nullptr, nullptr);
  return true;
}

// Sets the transformations to 8-bit grey or RGB; returns the channels after them (0: unsupported).
bool set_transforms(png_structp png, png_infop info, const PngHeader& hdr, int* channels, size_t* rowbytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  if (hdr.color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (hdr.color_type == PNG_COLOR_TYPE_GRAY && hdr.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // png_set_palette_to_rgb also turns a tRNS chunk into an alpha channel: strip that too (Pillow ignores tRNS
  // when it converts to RGB).
  if ((hdr.color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *channels = png_get_channels(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  return true;
}

bool read_rows(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

}  // namespace

PngImage decode_png(const uint8_t* data, size_t size, const std::string& origin, int max_side) {
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0) fail(ErrorCode::InvalidArgument, origin + ": not a PNG file");
  std::string err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warn_fn);
  if (!png) fail(ErrorCode::OutOfMemory, "libpng: cannot create read struct");
  png_infop info = png_create_info_struct(png);
  struct Destroy {
    png_structp* png;
    png_infop* info;
    ~Destroy() { png_destroy_read_struct(png, info, nullptr); }
  } destroy{&png, &info};
  if (!info) fail(ErrorCode::OutOfMemory, "libpng: cannot create info struct");
  auto bad = [&](const std::string& what) { fail(ErrorCode::InvalidArgument, origin + ": " + what); };
  MemReader reader{data, size, 0};
  PngHeader hdr{};
  if (!read_header(png, info, &reader, png_uint_32(max_side > 0 ? max_side : 1), &hdr)) {
    // libpng refuses a size above the user limit as "Invalid IHDR data": say what it was (IHDR is the first
    // chunk: signature, length, "IHDR", width and height big-endian).
    auto be32 = [&](size_t at) {
      return size >= at + 4 ? uint32_t(data[at]) << 24 | uint32_t(data[at + 1]) << 16 | uint32_t(data[at + 2]) << 8 |
                                  uint32_t(data[at + 3])
                            : 0u;
    };
    if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0 && max_side > 0 &&
        (be32(16) > uint32_t(max_side) || be32(20) > uint32_t(max_side)))
      bad("image of " + std::to_string(be32(16)) + "x" + std::to_string(be32(20)) + " pixels is larger than " +
          std::to_string(max_side) + " pixels on a side");
    bad("invalid PNG: " + (err.empty() ? std::string("unreadable header") : err));
  }
  if (hdr.bit_depth == 16)
    bad("16-bit PNG: only 8-bit images are supported (Pillow has no exact 8-bit reading of 16-bit samples); "
        "convert it to 8-bit RGB or greyscale");
  PngImage img;
  img.width = int(hdr.width);
  img.height = int(hdr.height);
  if (hdr.color_type == PNG_COLOR_TYPE_PALETTE) img.converted = "palette expanded to RGB";
  else if (hdr.color_type == PNG_COLOR_TYPE_GRAY && hdr.bit_depth < 8)
    img.converted = std::to_string(hdr.bit_depth) + "-bit greyscale scaled to 8 bits";
  if (hdr.color_type & PNG_COLOR_MASK_ALPHA)
    img.converted += std::string(img.converted.empty() ? "" : "; ") + "alpha channel dropped (not composited), as "
                                                                        "Pillow's convert(\"RGB\") does";
  size_t rowbytes = 0;
  if (!set_transforms(png, info, hdr, &img.channels, &rowbytes)) bad("invalid PNG: " + err);
  if ((img.channels != 1 && img.channels != 3) || rowbytes != size_t(img.width) * size_t(img.channels))
    bad("unsupported PNG layout (color type " + std::to_string(hdr.color_type) + ", bit depth " +
        std::to_string(hdr.bit_depth) + ")");
  img.pixels.resize(size_t(img.height) * rowbytes);
  std::vector<png_bytep> rows(size_t(img.height));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = img.pixels.data() + y * rowbytes;
  if (!read_rows(png, info, rows.data())) bad("invalid PNG: " + err);
  return img;
}

PngImage read_png(const std::string& path, int max_side) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(ErrorCode::Io, path + ": cannot open: " + std::strerror(errno));
  const std::streamoff n = f.tellg();
  if (n < 0) fail(ErrorCode::Io, path + ": cannot read");
  if (n > (std::streamoff(1) << 30)) fail(ErrorCode::InvalidArgument, path + ": larger than 1 GiB");
  std::vector<uint8_t> bytes(static_cast<size_t>(n));
  f.seekg(0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), n)) fail(ErrorCode::Io, path + ": read failed");
  return decode_png(bytes.data(), bytes.size(), path, max_side);
}

}  // namespace diffrt
