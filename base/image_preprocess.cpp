// VaeImageProcessor.preprocess on NHWC float32 (contract and semantics in image_preprocess.h).
#include "base/image_preprocess.h"

#include <string>

#include "base/error.h"
#include "base/image_resize.h"

namespace diffrt {

namespace {

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

// torch's to-float of PIL pixels: np.array(img).astype(np.float32) / 255.0 (one fp32 division).
std::vector<float> u8_to_unit(const std::vector<uint8_t>& px) {
  std::vector<float> v(px.size());
  for (size_t i = 0; i < px.size(); ++i) v[i] = float(px[i]) / 255.0f;
  return v;
}

void normalize(std::vector<float>& x) {
  for (float& v : x) v = 2.0f * v - 1.0f;
}

void binarize(std::vector<float>& x) {
  for (float& v : x) {  // 0.5 itself -> 1; NaN stays NaN, as torch's two masked assignments leave it
    if (v < 0.5f) v = 0.0f;
    else if (v >= 0.5f) v = 1.0f;
  }
}

void check_image(const char* what, int n, int h, int w, int c) {
  if (n < 1 || h < 1 || w < 1 || c < 1 || h > 65535 || w > 65535)
    bad(std::string(what) + ": bad size [" + std::to_string(n) + ", " + std::to_string(h) + ", " + std::to_string(w) +
        ", " + std::to_string(c) + "]");
}

}  // namespace

void vae_target_size(int image_h, int image_w, int vsf, int height, int width, int* out_h, int* out_w) {
  if (vsf < 1) bad("VAE scale factor " + std::to_string(vsf) + " must be >= 1");
  if (height < 0) bad("height = " + std::to_string(height) + " must be >= 0 (0: the image's own)");
  if (width < 0) bad("width = " + std::to_string(width) + " must be >= 0 (0: the image's own)");
  const int h = height ? height : image_h, w = width ? width : image_w;
  *out_h = h - h % vsf;
  *out_w = w - w % vsf;
  if (*out_h == 0)
    bad(std::string(height ? "height = " : "image height = ") + std::to_string(h) + " is below the VAE's factor " +
        std::to_string(vsf) + " (sizes are floored to a multiple of it)");
  if (*out_w == 0)
    bad(std::string(width ? "width = " : "image width = ") + std::to_string(w) + " is below the VAE's factor " +
        std::to_string(vsf) + " (sizes are floored to a multiple of it)");
}

void npy_image_dims(const std::vector<int64_t>& s, bool mask, const std::string& what, int* n, int* h, int* w, int* c) {
  std::vector<int64_t> d;
  if (s.size() == 4) d = s;
  else if (s.size() == 3 && mask) d = s.back() == 1 ? std::vector<int64_t>{1, s[0], s[1], 1}
                                                    : std::vector<int64_t>{s[0], s[1], s[2], 1};
  else if (s.size() == 3) d = {1, s[0], s[1], s[2]};
  else if (s.size() == 2) d = {1, s[0], s[1], 1};
  else
    bad(what + ": expected " + (mask ? "a mask [B, H, W, 1], [B, H, W], [H, W, 1] or [H, W]"
                                     : "images [B, H, W, C] (NHWC, like diffusers' output_type=\"np\"), [H, W, C] or [H, W]") +
        ", got " + std::to_string(s.size()) + " dimensions");
  for (int64_t v : d)
    if (v < 1 || v > 65535) bad(what + ": dimension " + std::to_string(v) + " out of range [1, 65535]");
  *n = int(d[0]); *h = int(d[1]); *w = int(d[2]); *c = int(d[3]);
}

ImageBatch preprocess_image_u8(const uint8_t* px, int h, int w, int c, int vsf, int height, int width) {
  check_image("image", 1, h, w, c);
  ImageBatch r;
  vae_target_size(h, w, vsf, height, width, &r.h, &r.w);
  r.n = 1;
  r.c = c;
  r.data = u8_to_unit(resize_lanczos_u8(px, h, w, c, r.h, r.w));
  normalize(r.data);  // a PIL image's minimum is >= 0: always normalised
  return r;
}

ImageBatch preprocess_image_f32(const float* x, int n, int h, int w, int c, int vsf, int height, int width,
                                bool* normalized) {
  check_image("images", n, h, w, c);
  ImageBatch r;
  vae_target_size(h, w, vsf, height, width, &r.h, &r.w);
  r.n = n;
  r.c = c;
  r.data = resize_nearest_nhwc(x, n, h, w, c, r.h, r.w);
  // diffusers tests the minimum of the resized batch (image.min() after the resize).
  bool negative = false;
  for (float v : r.data) negative = negative || v < 0.0f;
  if (!negative) normalize(r.data);
  if (normalized) *normalized = !negative;
  return r;
}

ImageBatch preprocess_mask_u8(const uint8_t* px, int h, int w, int c, int vsf, int height, int width) {
  check_image("mask", 1, h, w, c);
  if (c != 1 && c != 3) bad("mask: 8-bit masks have 1 (L) or 3 (RGB) channels, got " + std::to_string(c));
  ImageBatch r;
  vae_target_size(h, w, vsf, height, width, &r.h, &r.w);
  r.n = 1;
  r.c = 1;
  std::vector<uint8_t> resized = resize_lanczos_u8(px, h, w, c, r.h, r.w);
  if (c == 3) resized = rgb_to_l_u8(resized.data(), size_t(r.h) * size_t(r.w));  // convert("L") after the resize
  r.data = u8_to_unit(resized);
  binarize(r.data);
  return r;
}

ImageBatch preprocess_mask_f32(const float* x, int n, int h, int w, int c, int vsf, int height, int width) {
  check_image("mask", n, h, w, c);
  ImageBatch r;
  vae_target_size(h, w, vsf, height, width, &r.h, &r.w);
  r.n = n;
  r.c = c;
  r.data = resize_nearest_nhwc(x, n, h, w, c, r.h, r.w);
  binarize(r.data);
  return r;
}

ImageBatch mask_to_latent_size(const ImageBatch& m, int lh, int lw) {
  check_image("mask", m.n, m.h, m.w, m.c);
  if (lh < 1 || lw < 1) bad("mask: bad latent size " + std::to_string(lh) + "x" + std::to_string(lw));
  ImageBatch r;
  r.n = m.n; r.h = lh; r.w = lw; r.c = m.c;
  r.data = resize_nearest_nhwc(m.data.data(), m.n, m.h, m.w, m.c, lh, lw);
  return r;
}

}  // namespace diffrt
