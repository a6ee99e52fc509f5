// Image floats -> bytes, exactly as `diffrt sample` writes PNG pixels (runtime/image_png.cpp, to_u8), so
// IMAGES equals the PNG's bytes: clamp to [0, 1] (NaN -> 0), then nearbyint(v * 255) in float, rounding
// half to even (as numpy's round in diffusers' numpy_to_pil). tests/triton/backend_unit_test.cpp checks
// the two agree on every float pattern around each rounding boundary.
#pragma once
#include <cmath>
#include <cstdint>

namespace diffrt_triton {

inline uint8_t to_u8(float v) {
  if (!(v >= 0.0f)) v = 0.0f;
  if (v > 1.0f) v = 1.0f;
  return static_cast<uint8_t>(std::nearbyint(v * 255.0f));
}

}  // namespace diffrt_triton
