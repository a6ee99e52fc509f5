// PNG output: a grid of images (NHWC floats in [0, 1]) with tEXt metadata (seed, settings),
// encoded by libpng and written atomically.
#pragma once
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

}  // namespace diffrt
