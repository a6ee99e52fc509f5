// Storage dtypes and host-side conversions. Math is always fp32; fp16/bf16 are storage only.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace diffrt {

enum class DType : uint8_t { F32, F16, BF16 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::F16: return "fp16";
    case DType::BF16: return "bf16";
  }
  return "?";
}
// Parses "fp32"/"fp16"/"bf16"; returns false for anything else.
inline bool parse_dtype(std::string_view s, DType* out) {
  if (s == "fp32") { *out = DType::F32; return true; }
  if (s == "fp16") { *out = DType::F16; return true; }
  if (s == "bf16") { *out = DType::BF16; return true; }
  return false;
}

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// IEEE fp32 -> fp16, round to nearest even, with subnormals, inf and NaN.
inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: overflow
  if (abs < 0x38800000u) {                                   // fp16 subnormal or zero
    if (abs < 0x33000000u) return uint16_t(sign);            // < 2^-25 rounds to 0
    uint32_t mant = (abs & 0x007fffffu) | 0x00800000u;
    int shift = 113 - int(abs >> 23) + 13;                   // 126-exp of fp16 subnormal grid
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return uint16_t(sign | h);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    float v = float(mant) * (1.0f / 16777216.0f);  // mant * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  uint32_t lsb = (x >> 16) & 1u;
  return uint16_t((x + 0x7fffu + lsb) >> 16);
}
inline float bf16_to_f32(uint16_t b) { return bits_f32(uint32_t(b) << 16); }

// Converts n elements of `src` (dtype `t`) into fp32.
inline void to_f32(DType t, const void* src, float* dst, size_t n) {
  if (t == DType::F32) { std::memcpy(dst, src, n * 4); return; }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (t == DType::F16) for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
  else for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}
// Converts n fp32 values into dtype `t` at `dst`.
inline void from_f32(DType t, const float* src, void* dst, size_t n) {
  if (t == DType::F32) { std::memcpy(dst, src, n * 4); return; }
  uint16_t* d = static_cast<uint16_t*>(dst);
  if (t == DType::F16) for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
  else for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}

}  // namespace diffrt
