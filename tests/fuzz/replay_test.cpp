// Replays every input kept under tests/fuzz/regressions/<target>/ (crashers found by fuzzing and
// the seed corpus) through the parsers in the normal and sanitizer builds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz/fuzz_targets.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

size_t replay(const char* dir, int (*target)(const uint8_t*, size_t)) {
  size_t n = 0;
  fs::path root = diffrt::test::source_path(std::string("tests/fuzz/regressions/") + dir);
  if (!fs::exists(root)) return 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(e.path().string());
    EXPECT_EQ(target(bytes.data(), bytes.size()), 0);
    ++n;
  }
  return n;
}

}  // namespace

TEST(FuzzRegressions, ModelFile) { EXPECT_GT(replay("model_file", diffrt::fuzz::model_file), 0u); }
TEST(FuzzRegressions, Safetensors) { EXPECT_GT(replay("safetensors", diffrt::fuzz::safetensors), 0u); }
TEST(FuzzRegressions, Npy) { EXPECT_GT(replay("npy", diffrt::fuzz::npy), 0u); }
TEST(FuzzRegressions, Config) { EXPECT_GT(replay("config", diffrt::fuzz::config), 0u); }
