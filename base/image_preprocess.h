// diffusers 0.27.2 VaeImageProcessor.preprocess for the inputs of image-to-image and inpainting, on NHWC float32
// (the runtime's layout; the fixtures' NCHW output is its transpose). The semantics digest is section 1 of
// tests/fixtures/img2img/README.md; in short:
//  * the target size is (height or the image's, width or the image's), each FLOORED to a multiple of the VAE
//    scale factor vsf (explicit sizes too);
//  * 8-bit images (the PIL path: PNG files) are resized with Pillow's LANCZOS at 8 bits (an image already at the
//    target size is kept), then v = float(u) / 255;
//  * float arrays (the numpy path: .npy files) are resized with torch's legacy nearest (always applied; the
//    identity at the same size);
//  * image processor: x = 2x - 1, unless the batch minimum is < 0 (then the input is taken to be in [-1, 1]
//    already, as diffusers does with a FutureWarning);
//  * mask processor (do_normalize off, do_binarize, do_convert_grayscale): RGB 8-bit masks are converted to L
//    (PIL convert("L")) AFTER the resize; float masks are not grey-converted; then x < 0.5 -> 0, x >= 0.5 -> 1.
// And what the inpainting pipeline does next: mask latents = nearest downsampling of the binarised mask to the
// latent size (F.interpolate(mask, size=(H/vsf, W/vsf)): the top-left pixel of each vsf x vsf block).
// Tested by tests/image_preprocess_test.cpp against tests/fixtures/img2img/preprocess (bit for bit).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace diffrt {

// NHWC float32 images.
struct ImageBatch {
  std::vector<float> data;  // [n, h, w, c]
  int n = 0, h = 0, w = 0, c = 0;
};

// get_default_height_width: (requested or the image's size) floored to a multiple of vsf. Error(InvalidArgument)
// naming height/width when the result is 0 (an image or request smaller than vsf) or a request is negative.
void vae_target_size(int image_h, int image_w, int vsf, int height, int width, int* out_h, int* out_w);

// How an .npy array's shape maps to [n, h, w, c] (VaeImageProcessor's numpy rules): images [B,H,W,C] or [H,W,C]
// (stacked to a batch of one) or [H,W] (one channel); masks also [H,W,1] -> [1,H,W,1] and [B,H,W] -> [B,H,W,1].
// Error(InvalidArgument) naming `what` for other ranks or empty dimensions.
void npy_image_dims(const std::vector<int64_t>& shape, bool mask, const std::string& what, int* n, int* h, int* w,
                    int* c);

// The image processor on one 8-bit image [h, w, c] (PIL path): LANCZOS to the target size, /255, 2x - 1.
// height/width 0: the image's own.
ImageBatch preprocess_image_u8(const uint8_t* pixels, int h, int w, int c, int vsf, int height = 0, int width = 0);
// The image processor on float images NHWC [n, h, w, c] (numpy path): nearest to the target size, 2x - 1 unless
// the batch minimum is < 0. *normalized (optional) tells which.
ImageBatch preprocess_image_f32(const float* x, int n, int h, int w, int c, int vsf, int height = 0, int width = 0,
                                bool* normalized = nullptr);

// The mask processor on one 8-bit mask [h, w, c] (c = 1 or 3): LANCZOS, then RGB -> L, /255, binarised: [1, H, W, 1].
ImageBatch preprocess_mask_u8(const uint8_t* pixels, int h, int w, int c, int vsf, int height = 0, int width = 0);
// The mask processor on float masks NHWC [n, h, w, c]: nearest, binarised (no grey conversion: c is kept).
ImageBatch preprocess_mask_f32(const float* x, int n, int h, int w, int c, int vsf, int height = 0, int width = 0);

// Inpainting's mask latents: a binarised mask [n, H, W, c] -> nearest to [n, lh, lw, c].
ImageBatch mask_to_latent_size(const ImageBatch& mask, int lh, int lw);

}  // namespace diffrt
