// Image and mask inputs of the image commands (encode now; sample's init image and mask later): a PNG (8-bit RGB
// or greyscale; base/image_png.h says what else is converted and how) or an .npy (float32 NHWC in [0, 1] like
// diffusers' output_type="np", or in [-1, 1], which diffusers takes as already normalised when the batch minimum is
// < 0), preprocessed as diffusers' VaeImageProcessor does (base/image_preprocess.h): PNGs resized with Pillow's
// LANCZOS, arrays with torch's nearest, to the requested or own size floored to the VAE factor.
// Every refusal is Error(InvalidArgument) naming the flag and the file; nothing is written on error.
#pragma once
#include <string>

#include "base/image_preprocess.h"

namespace diffrt::cli {

struct ImageInput {
  ImageBatch images;      // NHWC float32; images: in [-1, 1]; masks: binarised 0/1, one channel
  int source_h = 0, source_w = 0;  // before the resize
  bool png = false;
  bool normalized = true; // images: 2x - 1 was applied ([0, 1] input); false: taken as [-1, 1] already
  std::string notice;     // what was converted or assumed, for the user ("" when nothing)
};

// `flag` names the option in errors ("--image"); `channels` the channel count the model takes (3); vsf the VAE
// scale factor; height/width 0: the image's own (each floored to vsf).
ImageInput load_image_input(const std::string& path, const std::string& flag, int channels, int vsf, int height,
                            int width);
// The inpainting mask (for `diffrt sample --mask`; no command uses it yet, so only its parts -- base/image_png and
// base/image_preprocess, bit-exact against the inpaint runs' masks -- are tested): white (>= 0.5) = repaint. PNG: greyscale or RGB (converted to L after the resize, as
// diffusers' mask processor); .npy: float32 [B,H,W,1], [B,H,W], [H,W,1] or [H,W] in [0, 1].
ImageInput load_mask_input(const std::string& path, const std::string& flag, int vsf, int height, int width);

}  // namespace diffrt::cli
