// Shared test helpers: fixture paths, .npy loading, error metrics.
#pragma once
#include <string>
#include <vector>
#include <cstdint>

namespace diffrt::test {

// Absolute path of a file under the source tree (tests/fixtures/..., models/...).
std::string source_path(const std::string& rel);
// Fresh, empty temporary directory for one test.
std::string temp_dir(const std::string& tag);

// max |a - b| and relative L2 error ||a - b|| / ||b|| (double accumulation). NaN anywhere -> inf.
double max_abs_diff(const float* a, const float* b, size_t n);
double rel_l2(const float* a, const float* b, size_t n);

}  // namespace diffrt::test
