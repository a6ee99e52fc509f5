// Image and mask inputs (contract in image_input.h).
#include "cli/image_input.h"

#include <cmath>

#include "base/error.h"
#include "base/image_png.h"
#include "base/npy.h"

namespace diffrt::cli {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

enum class Kind { Png, Npy };

Kind kind_of(const std::string& path, const std::string& flag) {
  if (ends_with(path, ".png") || ends_with(path, ".PNG")) return Kind::Png;
  if (ends_with(path, ".npy")) return Kind::Npy;
  bad(flag + ": '" + path + "' must be a .png or an .npy file");
}

// Reads a float32 .npy and checks every value is finite; returns it with its [n, h, w, c].
std::vector<float> read_f32(const std::string& path, const std::string& flag, bool mask, int* n, int* h, int* w, int* c,
                            float* lo, float* hi) {
  NpyArray a;
  try {
    a = read_npy(path, uint64_t(1) << 32);
  } catch (const Error& e) {
    fail(e.code(), flag + ": " + e.what());
  }
  if (a.type != NpyType::F32)
    bad(flag + ": " + path + ": expected float32 values (an " + (a.type == NpyType::I64 ? "int64" : "int32") +
        " array was given; images are float32 in [0, 1] like diffusers' output_type=\"np\")");
  npy_image_dims(a.shape, mask, flag + ": " + path, n, h, w, c);
  std::vector<float> x = a.as_f32();
  *lo = 1.0f;
  *hi = 0.0f;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]))
      bad(flag + ": " + path + ": value " + std::to_string(i) + " (flat index) is " + (std::isnan(x[i]) ? "NaN" : "infinite"));
    *lo = std::min(*lo, x[i]);
    *hi = std::max(*hi, x[i]);
  }
  return x;
}

// read_png / read_npy with the flag in front of their errors (codes kept: a missing file stays an I/O error).
PngImage read_png_arg(const std::string& path, const std::string& flag) {
  try {
    return read_png(path, 8192);
  } catch (const Error& e) {
    fail(e.code(), flag + ": " + e.what());
  }
}

}  // namespace

ImageInput load_image_input(const std::string& path, const std::string& flag, int channels, int vsf, int height,
                            int width) {
  ImageInput r;
  if (kind_of(path, flag) == Kind::Png) {
    PngImage img = read_png_arg(path, flag);
    r.png = true;
    r.source_h = img.height;
    r.source_w = img.width;
    r.notice = img.converted;
    if (img.channels != channels) {
      if (img.channels == 1 && channels == 3) {  // Pillow's convert("RGB") of an L image: the grey in each channel
        std::vector<uint8_t> rgb(img.pixels.size() * 3);
        for (size_t i = 0; i < img.pixels.size(); ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = img.pixels[i];
        img.pixels.swap(rgb);
        img.channels = 3;
        r.notice += std::string(r.notice.empty() ? "" : "; ") + "greyscale converted to RGB";
      } else {
        bad(flag + ": " + path + ": a " + std::to_string(img.channels) + "-channel image, the model's VAE takes " +
            std::to_string(channels) + " channels");
      }
    }
    try {
      r.images = preprocess_image_u8(img.pixels.data(), img.height, img.width, img.channels, vsf, height, width);
    } catch (const Error& e) {
      bad(flag + ": " + path + ": " + e.what());
    }
    return r;
  }
  int n = 0, h = 0, w = 0, c = 0;
  float lo = 0, hi = 0;
  const std::vector<float> x = read_f32(path, flag, false, &n, &h, &w, &c, &lo, &hi);
  if (c != channels)
    bad(flag + ": " + path + ": images have " + std::to_string(c) + " channels (the last axis of NHWC), the model's VAE "
        "takes " + std::to_string(channels) + (c == 4 ? " (diffusers would take 4-channel input as latents; pass "
                                                       "latents to the sampler directly instead)" : ""));
  if (lo < 0.0f ? (lo < -1.0f || hi > 1.0f) : hi > 1.0f)
    bad(flag + ": " + path + ": values in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]: images must be in "
        "[0, 1] (or in [-1, 1], taken as already normalised when the minimum is below 0)");
  r.source_h = h;
  r.source_w = w;
  try {
    r.images = preprocess_image_f32(x.data(), n, h, w, c, vsf, height, width, &r.normalized);
  } catch (const Error& e) {
    bad(flag + ": " + path + ": " + e.what());
  }
  if (!r.normalized) r.notice = "the minimum is below 0: taken as images in [-1, 1] already (as diffusers does)";
  return r;
}

ImageInput load_mask_input(const std::string& path, const std::string& flag, int vsf, int height, int width) {
  ImageInput r;
  if (kind_of(path, flag) == Kind::Png) {
    const PngImage img = read_png_arg(path, flag);
    r.png = true;
    r.source_h = img.height;
    r.source_w = img.width;
    r.notice = img.converted;
    try {
      r.images = preprocess_mask_u8(img.pixels.data(), img.height, img.width, img.channels, vsf, height, width);
    } catch (const Error& e) {
      bad(flag + ": " + path + ": " + e.what());
    }
    return r;
  }
  int n = 0, h = 0, w = 0, c = 0;
  float lo = 0, hi = 0;
  const std::vector<float> x = read_f32(path, flag, true, &n, &h, &w, &c, &lo, &hi);
  if (c != 1) bad(flag + ": " + path + ": a mask has one channel, got " + std::to_string(c));
  if (lo < 0.0f || hi > 1.0f)
    bad(flag + ": " + path + ": values in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]: a mask must be in [0, 1]");
  r.source_h = h;
  r.source_w = w;
  try {
    r.images = preprocess_mask_f32(x.data(), n, h, w, c, vsf, height, width);
  } catch (const Error& e) {
    bad(flag + ": " + path + ": " + e.what());
  }
  return r;
}

}  // namespace diffrt::cli
