// group_norm_cuda vs group_norm_ref: UNet shapes (DDPM CIFAR 32x32x128 / 16x16x256, SD 64x64x320 /
// 9x9x1280 / 8x8x2560), N = 1 and 8, odd shapes (cpg = 3, hw = 1, C not a multiple of the vector
// width), every fusion, all dtypes, in place, a large mean offset, and a check that the metric catches a
// wrong result. See gpu_test_util.h for the method and bounds.
#include "kernels/group_norm/group_norm.h"

#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct GnCase {
  int n, h, w, c, groups;
};
struct Fusion {
  EmbMode mode;
  bool silu;
  const char* name;
};
constexpr Fusion kFusions[] = {{EmbMode::None, false, "plain"},
                               {EmbMode::None, true, "silu"},
                               {EmbMode::AddBeforeNorm, true, "add_emb+silu"},
                               {EmbMode::ScaleShift, false, "scale_shift"},
                               {EmbMode::ScaleShift, true, "scale_shift+silu"}};

std::string name_of(const GnCase& s, DType t, const Fusion& f) {
  return "gn n=" + std::to_string(s.n) + " " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
         std::to_string(s.c) + " g=" + std::to_string(s.groups) + " " + dtype_name(t) + " " + f.name;
}

// Runs one case; returns the nmse (and records failures) so the error-detection test can reuse it.
// `ref_gamma_scale` != 1 deliberately breaks the reference.
double run_case(const GnCase& s, DType t, const Fusion& f, bool in_place, float mean_offset,
                float ref_gamma_scale = 1.0f, bool expect_pass = true) {
  const size_t hw = size_t(s.h) * s.w, count = size_t(s.n) * hw * s.c;
  const uint32_t seed = uint32_t(s.n * 131 + s.c * 7 + s.h + int(f.mode) * 3 + f.silu);
  std::vector<float> x = random_normal(count, seed, mean_offset, 1.0f);
  std::vector<float> gamma = random_normal(s.c, seed + 1, 1.0f, 0.2f);
  std::vector<float> beta = random_normal(s.c, seed + 2, 0.0f, 0.2f);
  const size_t emb_count = f.mode == EmbMode::None ? 0 : size_t(s.n) * s.c * (f.mode == EmbMode::ScaleShift ? 2 : 1);
  std::vector<float> emb = random_normal(emb_count, seed + 3, 0.0f, 0.5f);

  DevTensor dx = upload_rounded(x, t), dg = upload_rounded(gamma, t), db = upload_rounded(beta, t);
  DevTensor de = upload_rounded(emb, t);
  DevTensor dy(count, t);
  dy.poison();

  GroupNormParams p;
  p.x = dx.ptr();
  p.y = in_place ? dx.ptr() : dy.ptr();
  p.gamma = dg.ptr();
  p.beta = db.ptr();
  p.emb = emb_count ? de.ptr() : nullptr;
  p.emb_mode = f.mode;
  p.n = s.n;
  p.hw = int(hw);
  p.c = s.c;
  p.groups = s.groups;
  p.silu = f.silu;
  p.dtype = t;
  const size_t ws = group_norm_workspace_bytes(p);
  DeviceBuffer workspace(ws);
  p.workspace = workspace.get();
  p.workspace_bytes = ws;
  group_norm_cuda(p, nullptr);
  sync_check();

  std::vector<float> ref(count), g_ref = gamma;
  for (auto& g : g_ref) g *= ref_gamma_scale;
  GroupNormParams r = p;
  r.x = x.data();
  r.y = ref.data();
  r.gamma = g_ref.data();
  r.beta = beta.data();
  r.emb = emb_count ? emb.data() : nullptr;
  r.dtype = DType::F32;
  r.workspace = nullptr;
  r.workspace_bytes = 0;
  group_norm_ref(r);

  const DevTensor& out = in_place ? dx : dy;
  const std::string what = name_of(s, t, f) + (in_place ? " in-place" : "");
  if (!expect_pass) return nmse(out.download(), ref);
  expect_output_ok(out, ref, what);
  return nmse(out.download(), ref);
}

const GnCase kShapes[] = {
    {1, 32, 32, 128, 32}, {8, 32, 32, 128, 32}, {1, 16, 16, 256, 32}, {8, 16, 16, 256, 32},
    {1, 64, 64, 320, 32}, {8, 64, 64, 320, 32}, {1, 9, 9, 1280, 32},  {8, 9, 9, 1280, 32},
    {2, 8, 8, 2560, 32},  {2, 32, 32, 640, 32}, {3, 7, 5, 96, 32},    {1, 1, 1, 64, 32},
    {2, 17, 13, 12, 4},   {1, 4, 4, 6, 3},      {2, 256, 256, 128, 32},
};

TEST(GroupNormGpu, ShapesDtypesFusions) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int i = 0;
  for (const GnCase& s : kShapes)
    for (DType t : kAllDtypes) {
      // Every shape runs plain and one rotating fusion; small shapes run every fusion.
      const bool small = size_t(s.n) * s.h * s.w * s.c <= (1u << 20);
      for (int fi = 0; fi < 5; ++fi)
        if (small || fi == 0 || fi == 1 + (i % 4)) run_case(s, t, kFusions[fi], false, 0.0f);
      ++i;
    }
}

TEST(GroupNormGpu, InPlace) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2, 16, 16, 256, 32}, t, kFusions[2], true, 0.0f);
    run_case({1, 64, 64, 320, 32}, t, kFusions[4], true, 0.0f);
  }
}

// Mean far from zero relative to the spread: catches E[x^2] - E[x]^2 cancellation.
TEST(GroupNormGpu, LargeMeanOffset) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2, 32, 32, 128, 32}, t, kFusions[0], false, 100.0f);
    run_case({1, 64, 64, 320, 32}, t, kFusions[1], false, 30.0f);
  }
}

// The metric must reject a kernel that is slightly wrong (here: the reference's gamma is off by 1%),
// and an output the kernel never wrote (poison) must read as non-finite.
TEST(GroupNormGpu, MetricDetectsErrors) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    double e = run_case({2, 16, 16, 256, 32}, t, kFusions[0], false, 0.0f, 1.01f, false);
    EXPECT_GT(e, dtype_tolerance(t)) << "a 1% gamma error went unnoticed for " << dtype_name(t);
  }
  DevTensor never_written(1000, DType::F16);
  never_written.poison();
  EXPECT_EQ(count_nonfinite(never_written.download()), 1000u);
  EXPECT_TRUE(std::isinf(nmse(never_written.download(), std::vector<float>(1000, 1.0f))));
}

TEST(GroupNormGpu, RejectsBadArguments) {
  DIFFRT_SKIP_WITHOUT_GPU();
  GroupNormParams p;
  DevTensor x(64, DType::F32);
  p.x = p.y = x.ptr();
  p.n = 1;
  p.hw = 2;
  p.c = 32;
  p.groups = 5;  // 32 % 5 != 0
  EXPECT_THROW(group_norm_cuda(p, nullptr), Error);
  p.groups = 8;  // no workspace
  EXPECT_THROW(group_norm_cuda(p, nullptr), Error);
}

}  // namespace
}  // namespace diffrt::test
