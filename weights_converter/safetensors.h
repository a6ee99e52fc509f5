// Hostile-input reader for safetensors files and sharded checkpoints (*.safetensors.index.json).
// Layout: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the byte buffer. Validation: see ../shared bad_inputs.md
// items 1-14 and 21 (every rule has a test in tests/safetensors_test.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace diffrt {

struct SafeTensor {
  std::string name;
  DType dtype = DType::F32;   // F32, F16, BF16 are supported; others are refused by name
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes; // little-endian payload, copied out of the file
  std::string file;           // which file it came from (for error messages)
  uint64_t numel() const;
  std::vector<float> to_f32() const;
};

struct SafeTensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, SafeTensor> tensors;  // by name
  std::set<std::string> skipped;              // integer tensors named in `skip` (validated, not loaded)
};

// `skip`: names of tensors that may hold an integer or bool dtype (e.g. a text encoder's persistent
// position_ids buffer): their layout is validated like any other tensor's, but they are not loaded (they
// are listed in `skipped`). Any other tensor with such a dtype is refused as Unsupported.
SafeTensorsFile read_safetensors(const std::string& path, const std::set<std::string>& skip = {});
SafeTensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& origin,
                                  const std::set<std::string>& skip = {});
// Reads "<dir>/<index_name>" and every shard it names. Shard paths must stay inside `dir` (no
// absolute paths, no "..", no symlink escaping it); each tensor must be in exactly the shard
// the weight_map names; no tensor may appear twice.
SafeTensorsFile read_sharded_safetensors(const std::string& dir, const std::string& index_name,
                                         const std::set<std::string>& skip = {});

// Test helper and converter utility: encodes tensors into safetensors bytes (sorted by name).
std::vector<uint8_t> encode_safetensors(const std::vector<SafeTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata = {});

}  // namespace diffrt
