// Output safety: write to "<path>.tmp.<pid>" then rename over the target, so an existing file is
// never left half-written. Every write is checked (disk full, unwritable directory).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace diffrt {

void write_file_atomic(const std::string& path, const void* data, size_t size);
// Reads a whole file, refusing files above max_bytes. Throws Error(Io) naming the path.
std::string read_file_bytes(const std::string& path, uint64_t max_bytes);

}  // namespace diffrt
