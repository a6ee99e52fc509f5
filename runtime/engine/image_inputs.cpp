// Image-to-image and inpainting inputs of a job (contract in image_inputs.h).
#include "runtime/engine/image_inputs.h"

#include "base/error.h"
#include "base/image_preprocess.h"
#include "runtime/rng.h"

namespace diffrt::engine {

namespace {

// Rows [k, per] tiled to [b, per]: row i = src[i % k] (diffusers' torch.cat([x] * (B // k)) / repeat).
std::vector<float> tile_rows(const std::vector<float>& src, int k, int b) {
  const size_t per = src.size() / size_t(k);
  std::vector<float> out(per * size_t(b));
  for (int i = 0; i < b; ++i) std::copy_n(src.begin() + size_t(i % k) * per, per, out.begin() + size_t(i) * per);
  return out;
}

void check_latents(const EncodedLatents& z, int n, const SampleRequest& r, const char* what) {
  if (z.n != n || z.h != r.height || z.w != r.width || z.c != r.channels)
    fail(ErrorCode::InvalidArgument, std::string(what) + ": the VAE encoder gives latents [" + std::to_string(z.n) + ", " +
                                         std::to_string(z.h) + ", " + std::to_string(z.w) + ", " + std::to_string(z.c) +
                                         "], the sampler runs [" + std::to_string(n) + ", " + std::to_string(r.height) +
                                         ", " + std::to_string(r.width) + ", " + std::to_string(r.channels) + "]");
}

}  // namespace

SamplerInputs ImageJobInputs::sampler_inputs(TorchGenerator* generator) const {
  SamplerInputs in;
  if (!image_latents.empty()) in.image_latents = image_latents.data();
  if (!noise.empty()) in.initial_noise = noise.data();
  if (!mask.empty()) in.mask = mask.data();
  if (!extra.empty()) in.model_in_extra = extra.data();
  in.generator = generator;
  return in;
}

ImageJobInputs build_image_inputs(const Job& job, TorchGenerator* gen, const EncodeLatentsFn& encode) {
  const JobImage& im = job.image;
  const SampleRequest& r = job.req;
  if (!im.present()) fail(ErrorCode::Internal, "build_image_inputs: the job has no image");
  const bool torch = r.rng == RngKind::Torch;
  if (torch && !gen) fail(ErrorCode::Internal, "build_image_inputs: torch RNG needs the request's generator");
  const int B = r.batch, C = r.channels, h = r.height, w = r.width;
  PosteriorOptions po;
  po.sample = true;  // retrieve_latents(sample_mode="sample"), what both pipelines do
  po.rng = r.rng;
  po.seed = r.seed;
  po.first_sample_index = r.first_sample_index;
  po.generator = gen;
  po.scaled = true;

  ImageJobInputs out;
  // 1. The init image: latents (posterior draw #1) or the pixels themselves.
  if (!im.latent) {
    if (im.c != C || im.h != h || im.w != w) fail(ErrorCode::Internal, "build_image_inputs: pixel image shape");
    out.image_latents = tile_rows(im.pixels, im.n, B);
  } else if (im.encode_image) {
    po.stream = 0;
    if (torch) {  // diffrt draws as diffusers: one posterior sample per given image, then tiled
      const EncodedLatents z = encode(im.pixels, im.n, im.h, im.w, po);
      check_latents(z, im.n, r, "init_image");
      out.image_latents = tile_rows(z.data, im.n, B);
    } else {  // Philox: per output row (seed, first_sample_index + row), so row i equals a batch-of-one run
      const EncodedLatents z = encode(im.n == B ? im.pixels : tile_rows(im.pixels, im.n, B), B, im.h, im.w, po);
      check_latents(z, B, r, "init_image");
      out.image_latents = z.data;
    }
  }
  // 2. The noise (torch: the next draw; Philox: the sampler's own initial noise).
  if (torch) out.noise = torch_randn_nchw_to_nhwc(*gen, B, C, h, w);
  // 3. The mask and, for latent models, the masked image (posterior draw, even for the 4-channel UNet, as diffusers).
  if (!im.mask.empty()) {
    ImageBatch m;
    m.n = im.mask_n; m.h = im.h; m.w = im.w; m.c = 1;
    m.data = im.mask;
    const ImageBatch ml = im.latent ? mask_to_latent_size(m, h, w) : m;  // F.interpolate nearest
    const std::vector<float> mask_b = tile_rows(ml.data, im.mask_n, B);   // [B, h, w]
    std::vector<float> masked_latents;
    if (im.latent) {
      const int rows = im.masked_rows(), c = im.c;
      const size_t hw = size_t(im.h) * size_t(im.w);
      std::vector<float> masked(size_t(rows) * hw * size_t(c));
      for (int i = 0; i < rows; ++i) {
        const float* px = im.pixels.data() + size_t(im.n == 1 ? 0 : i) * hw * size_t(c);
        const float* mk = im.mask.data() + size_t(im.mask_n == 1 ? 0 : i) * hw;
        float* dst = masked.data() + size_t(i) * hw * size_t(c);
        for (size_t p = 0; p < hw; ++p)
          for (int k = 0; k < c; ++k) dst[p * size_t(c) + size_t(k)] = px[p * size_t(c) + size_t(k)] * (mk[p] < 0.5f ? 1.0f : 0.0f);
      }
      po.stream = 1;
      const int enc_rows = torch ? rows : B;  // Philox: per output row, as the init image
      const EncodedLatents z = encode(torch || rows == B ? masked : tile_rows(masked, rows, B), enc_rows, im.h, im.w, po);
      check_latents(z, enc_rows, r, "masked image");
      masked_latents = tile_rows(z.data, enc_rows, B);
    }
    if (r.legacy_inpaint_blend) out.mask = mask_b;
    const int cin = r.model_in_channels ? r.model_in_channels : C;
    if (cin > C) {
      const int E = cin - C;
      if (E != C + 1 || masked_latents.empty()) fail(ErrorCode::Internal, "build_image_inputs: extra channels");
      const int bm = model_batch(r);  // [x; x] for guidance, as diffusers duplicates mask and masked latents
      const size_t hw = size_t(h) * size_t(w);
      out.extra.resize(size_t(bm) * hw * size_t(E));
      for (int row = 0; row < bm; ++row) {
        const int b = row % B;
        for (size_t p = 0; p < hw; ++p) {
          float* dst = out.extra.data() + (size_t(row) * hw + p) * size_t(E);
          dst[0] = mask_b[size_t(b) * hw + p];
          for (int k = 0; k < C; ++k) dst[1 + k] = masked_latents[(size_t(b) * hw + p) * size_t(C) + size_t(k)];
        }
      }
    }
  }
  return out;
}

}  // namespace diffrt::engine
