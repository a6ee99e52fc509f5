// Whole-model parity: every fixture under tests/fixtures/models/ (random-weight UNet2DModels saved
// by diffusers, with diffusers' forward output) is converted and run by the CPU backend.
// fp32 must match diffusers to relative L2 <= 1e-5; fp16/bf16 weight storage within a bound.
#include <gtest/gtest.h>

#include <omp.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/cpu_executor.h"
#include "base/layout.h"
#include "base/npy.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

std::vector<std::string> fixture_dirs() { return test::model_fixture_dirs(); }

struct Result { double rel, max_abs; };

Result run_fixture(const std::string& dir, DType dtype) {
  ModelFile mf = test::convert_and_read(dir, dtype, "parity");
  NpyArray x = read_npy(dir + "/x.npy"), t = read_npy(dir + "/t.npy"), want = read_npy(dir + "/out.npy");
  const int n = int(x.shape[0]), c = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
  std::vector<float> ts;
  for (int64_t v : t.as_i64()) ts.push_back(float(v));
  std::vector<int32_t> labels;
  if (fs::exists(dir + "/labels.npy"))
    for (int64_t v : read_npy(dir + "/labels.npy").as_i64()) labels.push_back(int32_t(v));
  CpuWeights weights(mf);
  CpuExecutor ex(mf, weights, n, h, w);
  const ValueShape& os = ex.plan().shapes[mf.graph.output];
  std::vector<float> out(os.numel());
  auto xin = nchw_to_nhwc(x.as_f32(), n, c, h, w);
  ex.run(xin.data(), ts.data(), labels.empty() ? nullptr : labels.data(), out.data());
  auto got = nhwc_to_nchw(out, n, int(os.h), int(os.w), int(os.c));
  auto ref = want.as_f32();
  EXPECT_EQ(got.size(), ref.size());
  return {test::rel_l2(got.data(), ref.data(), ref.size()), test::max_abs_diff(got.data(), ref.data(), ref.size())};
}

}  // namespace

TEST(ModelParity, FixturesExist) { EXPECT_GE(fixture_dirs().size(), 6u); }

TEST(ModelParity, Fp32MatchesDiffusers) {
  for (const auto& dir : fixture_dirs()) {
    Result r = run_fixture(dir, DType::F32);
    std::printf("[parity fp32] %-28s rel_l2 %.3g  max_abs %.3g\n", fs::path(dir).filename().c_str(), r.rel, r.max_abs);
    EXPECT_LE(r.rel, 1e-5) << dir;
  }
}

// Half-precision storage (weights rounded, math still fp32 on the CPU): the error is the weight
// rounding alone, bounded well below what would change an image.
TEST(ModelParity, HalfStorageWithinBound) {
  for (const auto& dir : fixture_dirs()) {
    Result f16 = run_fixture(dir, DType::F16), bf16 = run_fixture(dir, DType::BF16);
    std::printf("[parity fp16] %-28s rel_l2 %.3g | bf16 rel_l2 %.3g\n", fs::path(dir).filename().c_str(), f16.rel, bf16.rel);
    EXPECT_LE(f16.rel, 3e-3) << dir;
    EXPECT_LE(bf16.rel, 2e-2) << dir;
  }
}

// The CPU backend is deterministic: the same output bits whatever the thread count (reductions
// use fixed partitions, never completion order).
TEST(ModelParity, BitIdenticalAcrossThreadCounts) {
  const std::string dir = test::source_path("tests/fixtures/models/class_cond");
  std::string drt = test::temp_dir("threads") + "/m.drt";
  ConvertOptions opt;
  opt.input = dir;
  opt.output = drt;
  convert_diffusers(opt);
  ModelFile mf = read_model_file(drt);
  CpuWeights weights(mf);
  NpyArray x = read_npy(dir + "/x.npy");
  const int n = int(x.shape[0]), c = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
  auto xin = nchw_to_nhwc(x.as_f32(), n, c, h, w);
  std::vector<float> ts(size_t(n), 321.0f);
  std::vector<int32_t> labels(size_t(n), 4);
  std::vector<std::vector<float>> outs;
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    CpuExecutor ex(mf, weights, n, h, w);
    outs.emplace_back(ex.plan().shapes[mf.graph.output].numel());
    ex.run(xin.data(), ts.data(), labels.data(), outs.back().data());
  }
  omp_set_num_threads(saved);
  for (size_t i = 1; i < outs.size(); ++i)
    EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[i].data(), outs[0].size() * sizeof(float))) << "threads run " << i;
}
