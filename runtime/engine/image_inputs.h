// The sampler inputs of an image-to-image or inpainting job (engine.h JobImage), built the same way by both
// backends, each with its own VAE encoder (`encode`). diffusers 0.27.2 order (tests/fixtures/img2img/README.md,
// sections 5, 6 and 8), with one generator for the whole request:
//   * img2img: image posterior -> noise -> the scheduler's draws; start = add_noise(image latents, noise, t_start);
//   * inpainting: [image posterior (4-channel UNet, or strength < 1)] -> noise -> masked-image posterior -> draws;
//     the mask is nearest-downsampled to the latents; a 9-channel UNet gets cat([mask, masked-image latents]) as
//     constant extra input channels (duplicated for guidance), a 4-channel UNet the legacy blend after every step;
//   * pixel models (SDEdit): x0 = the image itself; noise -> draws; a mask gives the legacy blend in pixel space.
// Image rows are tiled to the batch ([i0, i1, i0, i1], as diffusers repeats them). Torch RNG encodes each given image
// once (diffusers' draws and shapes). Philox encodes per output row (the posterior noise of row i is Philox(seed,
// first_sample_index + i, stream 0 for the init image, 1 for the masked image)), so that sample i of a batch equals
// a batch-of-one run with first_sample_index i, as for text-to-image; the sampler draws the initial noise itself.
// Tested through the API by tests/api_img2img_test.cpp (CPU) and tests/gpu/img2img_test.cpp (CUDA vs CPU).
#pragma once
#include <functional>
#include <vector>

#include "runtime/engine/engine.h"

namespace diffrt::engine {

// The backend's VAE encoder and posterior: images NHWC [n, H, W, c] in [-1, 1] -> latents NHWC [n, h, w, C].
using EncodeLatentsFn = std::function<EncodedLatents(const std::vector<float>& images, int n, int h, int w,
                                                     const PosteriorOptions& o)>;

struct ImageJobInputs {
  std::vector<float> image_latents;  // [B, h, w, C]: the start / blend target (scaled latents, or x0 for pixels)
  std::vector<float> noise;          // [B, h, w, C]: torch RNG's initial noise (drawn here, in diffusers' order)
  std::vector<float> mask;           // [B, h, w]: the legacy blend's mask
  std::vector<float> extra;          // [Bm, h, w, E]: the 9-channel UNet's mask and masked-image latents
  // The SamplerInputs pointing into this object (and the generator for torch RNG).
  SamplerInputs sampler_inputs(TorchGenerator* generator) const;
};

// Builds the inputs of job (job.image present). `generator` is the request's torch generator (RngKind::Torch; it
// then continues into the sampler), null for Philox.
ImageJobInputs build_image_inputs(const Job& job, TorchGenerator* generator, const EncodeLatentsFn& encode);

}  // namespace diffrt::engine
