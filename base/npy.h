// .npy arrays at the edges (CLI eval/sample, fixtures). Only little-endian float32/int64/int32,
// C order, version 1.0/2.0 headers. The reader treats the file as hostile: header parsed
// strictly, shape product overflow-checked, payload size must match the file exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace diffrt {

enum class NpyType : uint8_t { F32, I64, I32 };

struct NpyArray {
  NpyType type = NpyType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // raw little-endian payload
  uint64_t numel() const;
  std::vector<float> as_f32() const;      // F32 only, else throws
  std::vector<int64_t> as_i64() const;    // I64 or I32, else throws
};

// `max_bytes` caps the payload (checked before allocation). Errors name `path`.
NpyArray read_npy(const std::string& path, uint64_t max_bytes = (4ull << 30));
NpyArray parse_npy(const uint8_t* data, size_t size, const std::string& origin, uint64_t max_bytes);
// Writes atomically (temp file + rename).
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
std::vector<uint8_t> encode_npy_f32(const std::vector<int64_t>& shape, const float* data);

}  // namespace diffrt
