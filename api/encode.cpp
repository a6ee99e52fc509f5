// diffrt C++ API (diffrt.hpp): Session::encode, the VAE encoder and its posterior, as the image-to-image and
// inpainting pipelines run them on a preprocessed image. The API layer checks everything the caller gives
// (model, sizes, every value finite and inside [-1, 1], the options) before the backend runs; the backend runs
// the encoder graph and the posterior (runtime/vae_encode.h; one fused kernel on the GPU).
// Tested by tests/vae_encoder_test.cpp (CPU parity with diffusers through this API, bad input),
// tests/gpu/vae_encoder_test.cpp and tests/cli/encode_cli_test.sh.
#include <cmath>
#include <new>

#include "api/api_internal.h"
#include "base/layout.h"
#include "runtime/rng.h"
#include "runtime/vae_encode.h"

namespace diffrt {

using api::bad;

namespace {

// Checks the request's sizes against the model.
void check_encode_sizes(const Model& model, int n, int h, int w) {
  const ModelInfo& info = model.info();
  if (!info.has_vae_encoder) {
    try {
      require_vae_encoder(ModelAccess::file(model));
    } catch (const Error& e) {
      bad(std::string("encode: ") + e.what());
    }
  }
  if (n < 1 || n > kMaxBatch) bad("encode: n = " + std::to_string(n) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  const int f = info.vae_scale_factor;
  auto check = [&](const char* what, int v) {
    if (v < f || v > 8192)
      bad(std::string("encode: ") + what + " = " + std::to_string(v) + " must be in [" + std::to_string(f) +
          ", 8192] (the VAE downsamples by " + std::to_string(f) + ")");
  };
  check("height", h);
  check("width", w);
}

// Checks the sizes and every value (finite, inside [-1, 1]); returns the NHWC image element count.
size_t check_encode_input(const Model& model, const float* images, int n, int h, int w) {
  check_encode_sizes(model, n, h, w);
  if (!images) bad("encode: images is null");
  const size_t c = size_t(model.info().encoder_image_channels);
  const size_t count = size_t(n) * size_t(h) * size_t(w) * c;
  for (size_t i = 0; i < count; ++i) {
    const float v = images[i];
    if (std::isfinite(v) && v >= -1.0f && v <= 1.0f) continue;
    const size_t pix = i / c;
    const std::string where = "images[" + std::to_string(pix / (size_t(h) * size_t(w))) + ", " +
                              std::to_string(pix / size_t(w) % size_t(h)) + ", " + std::to_string(pix % size_t(w)) +
                              ", " + std::to_string(i % c) + "] (NHWC)";
    if (!std::isfinite(v)) bad("encode: " + where + " is " + (std::isnan(v) ? "NaN" : "infinite"));
    bad("encode: " + where + " = " + std::to_string(v) +
        " is outside [-1, 1] (the encoder takes VaeImageProcessor's output: 2x - 1 of images in [0, 1])");
  }
  return count;
}

}  // namespace

ImageShape Session::encode_output_shape(int n, int h, int w) const {
  const Model& model = *impl_->model;
  check_encode_sizes(model, n, h, w);
  ImageShape s;
  s.batch = n;
  vae_encoder_latent_hw(ModelAccess::file(model), h, w, &s.height, &s.width);
  s.channels = ModelAccess::file(model).vae_encoder.graph.out_channels / 2;
  s.latents = true;
  return s;
}

std::vector<float> Session::encode(const float* images, int n, int h, int w, const EncodeOptions& o) {
  api::BusyScope busy(impl_->busy);
  const size_t count = check_encode_input(*impl_->model, images, n, h, w);
  if (o.rng != Rng::Philox && o.rng != Rng::Torch) bad("encode: rng: unknown value " + std::to_string(int(o.rng)));
  api::OmpThreadsScope threads(impl_->options.threads);
  try {
    const std::vector<float> x(images, images + count);  // NHWC already
    TorchGenerator gen(o.seed);
    PosteriorOptions po;
    po.sample = o.sample;
    po.rng = o.rng == Rng::Torch ? RngKind::Torch : RngKind::Philox;
    po.seed = o.seed;
    po.first_sample_index = o.first_sample_index;
    po.generator = &gen;
    po.scaled = o.scaled;
    const EncodedLatents z = impl_->backend->encode_latents(x, n, h, w, po);
    return nhwc_to_nchw(z.data, z.n, z.h, z.w, z.c);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "encode: out of host memory for " + std::to_string(n) + " images of " +
                                     std::to_string(h) + "x" + std::to_string(w));
  }
}

std::vector<float> Session::encode_moments(const float* images, int n, int h, int w) {
  api::BusyScope busy(impl_->busy);
  const size_t count = check_encode_input(*impl_->model, images, n, h, w);
  api::OmpThreadsScope threads(impl_->options.threads);
  try {
    const EncodedLatents m = impl_->backend->encode(std::vector<float>(images, images + count), n, h, w);
    return nhwc_to_nchw(m.data, m.n, m.h, m.w, m.c);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "encode: out of host memory for " + std::to_string(n) + " images of " +
                                     std::to_string(h) + "x" + std::to_string(w));
  }
}

}  // namespace diffrt
