// Image resampling exactly as the libraries diffusers' VaeImageProcessor calls (diffusers 0.27.2):
//  * resize_lanczos_u8: Pillow 9.4's Image.resize(size, LANCZOS) on 8-bit images (the PIL input path), written
//    from the arithmetic documented in tests/fixtures/img2img/README.md ("PIL LANCZOS"), bit-exact:
//      per axis, scale = in/out (double), fs = max(scale, 1), support = 3 fs; for output index i:
//      center = (i + 0.5) scale, lo = max(int(center - support + 0.5), 0), hi = min(int(center + support + 0.5), in);
//      weights k[j] = L((lo + j - center + 0.5) / fs) for j < hi - lo, L(t) = sinc(t) sinc(t/3) on [-3, 3), divided
//      by their sequential double sum, then fixed point with 22 fraction bits (round half away from zero);
//      out = clamp((2^21 + sum pixel * k) >> 22, 0, 255). The horizontal pass runs first (rounded to 8 bits), then
//      the vertical; an axis that keeps its size is not resampled (a same-size resize is a copy).
//  * nearest_source_index / resize_nearest_nhwc: torch 1.13 F.interpolate(mode="nearest", size=...) (the numpy and
//    tensor input paths, and the mask -> latent-size downsampling of inpainting): src = dst when the size is kept,
//    dst >> 1 when it doubles, else min(floor(float(dst) * (float(in) / float(out))), in - 1) in float32.
//  * rgb_to_l_u8: PIL convert("L") of RGB: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
// Tested by tests/image_preprocess_test.cpp against the fixtures (bit for bit) and Pillow-made cases.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace diffrt {

// Pixels [h, w, c] (c channels resampled independently) -> [oh, ow, c].
std::vector<uint8_t> resize_lanczos_u8(const uint8_t* src, int h, int w, int c, int oh, int ow);

int nearest_source_index(int dst, int in, int out);
// x NHWC [n, h, w, c] -> [n, oh, ow, c].
std::vector<float> resize_nearest_nhwc(const float* x, int n, int h, int w, int c, int oh, int ow);

// 8-bit RGB [pixels, 3] -> L [pixels].
std::vector<uint8_t> rgb_to_l_u8(const uint8_t* rgb, size_t pixels);

}  // namespace diffrt
