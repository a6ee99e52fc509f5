// PNG output: a grid of images (NHWC floats in [0, 1]) with tEXt metadata (seed, settings),
// encoded by libpng and written atomically. PNG input: 8-bit images for image-to-image and inpainting.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace diffrt {

// images: [N, H, W, C] in [0, 1], C = 1 (grey), 3 (RGB) or 4 (RGBA). Laid out in a grid of
// `cols` columns (0: near-square). Values are rounded like diffusers' numpy_to_pil
// (round half to even after * 255).
std::vector<unsigned char> encode_png_grid(const float* images, int n, int h, int w, int c, int cols,
                                           const std::vector<std::pair<std::string, std::string>>& text);
void write_png_grid(const std::string& path, const float* images, int n, int h, int w, int c, int cols,
                    const std::vector<std::pair<std::string, std::string>>& text);

// An image read from a PNG: 8-bit pixels [height, width, channels] row-major, channels 1 (grey) or 3 (RGB).
struct PngImage {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::string converted;  // "" when stored as 8-bit grey or RGB; else what was done (e.g. "alpha dropped")
};

// Reads a PNG strictly, as Pillow 9.4 opens it and convert("RGB") / convert("L") turn it into 8-bit pixels
// (diffusers' load_image converts every image to RGB): 8-bit greyscale and RGB as stored; greyscale of 1, 2 or
// 4 bits scaled to 8 (v * 255 / (2^bits - 1), as Pillow's "1", "L;2" and "L;4" unpackers); palette images
// expanded to their RGB entries; an alpha channel (grey+alpha, RGBA) dropped without compositing (Pillow's
// convert drops it; a tRNS chunk is ignored likewise). No gamma or colour-profile transform is applied (Pillow
// applies none). Refused, with Error(InvalidArgument) naming `origin`: 16-bit samples (Pillow keeps some as 32-bit
// integer images and reads others by their high byte: no one exact 8-bit meaning), images wider or taller than
// `max_side` (checked before the pixels are decompressed), and anything libpng rejects (bad signature, CRC,
// truncated data).
PngImage decode_png(const uint8_t* data, size_t size, const std::string& origin, int max_side = 16384);
// Reads `path` (at most 1 GiB) and decodes it; errors name the path.
PngImage read_png(const std::string& path, int max_side = 16384);

}  // namespace diffrt
