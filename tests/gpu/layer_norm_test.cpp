// layer_norm_cuda vs layer_norm_ref: SD UNet transformer shapes (rows = 2*4096, 2*1024, 2*256, 2*64 tokens
// at C = 320, 640, 1280), CLIP (77/154 tokens at C = 768, 1024), awkward ones (C = 1, 3, 33, 257, 1025,
// 4097, 20000; rows = 1, 77; more rows than one grid sweep), every launch path and vector width (asserted),
// misaligned pointers, all dtypes, in place, no affine, large mean offsets, and a check that the metric
// catches a wrong result. Method and bounds: gpu_test_util.h. In addition, for fp16/bf16 the error must
// stay within 3x the error of rounding the exact result to the storage type (the kernel computes in fp32
// and rounds once, so it should sit at that floor).
#include "kernels/layer_norm/layer_norm.h"

#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct LnCase {
  long long rows;
  int c;
  float mean = 0.0f, stddev = 1.0f;
  size_t offset = 0;  // elements added to every pointer (1 forces scalar accesses)
  bool affine = true;
};

using PathKey = std::tuple<int, int, int>;  // path, vec, vecs_per_thread
std::set<PathKey>& seen_paths() {
  static std::set<PathKey> s;
  return s;
}

std::string name_of(const LnCase& s, DType t, bool in_place) {
  return "ln rows=" + std::to_string(s.rows) + " c=" + std::to_string(s.c) + " " + dtype_name(t) +
         (s.mean != 0.0f ? " mean=" + std::to_string(s.mean) : "") + (s.offset ? " misaligned" : "") +
         (s.affine ? "" : " no-affine") + (in_place ? " in-place" : "");
}

// Runs one case and returns the nmse (recording failures unless expect_pass is false).
double run_case(const LnCase& s, DType t, bool in_place, float ref_gamma_scale = 1.0f, bool expect_pass = true) {
  const size_t count = size_t(s.rows) * s.c;
  const uint32_t seed = uint32_t(s.rows * 31 + s.c * 7 + int(t));
  std::vector<float> x = random_normal(count, seed, s.mean, s.stddev);
  std::vector<float> gamma = random_normal(s.c, seed + 1, 1.0f, 0.3f);
  std::vector<float> beta = random_normal(s.c, seed + 2, 0.0f, 0.3f);
  DevTensor dx = upload_rounded(x, t, s.offset), dg = upload_rounded(gamma, t, s.offset),
            db = upload_rounded(beta, t, s.offset);
  DevTensor dy(count, t, s.offset);
  dy.poison();

  LayerNormParams p;
  p.x = dx.ptr();
  p.y = in_place ? dx.ptr() : dy.ptr();
  p.gamma = s.affine ? dg.ptr() : nullptr;
  p.beta = s.affine ? db.ptr() : nullptr;
  p.rows = s.rows;
  p.c = s.c;
  p.eps = 1e-5f;
  p.dtype = t;
  const LayerNormLaunch l = layer_norm_cuda_launch(p);
  seen_paths().insert({int(l.path), l.vec == 1 ? 1 : 16, l.vecs_per_thread});
  layer_norm_cuda(p, nullptr);
  sync_check();

  std::vector<float> ref(count), g_ref = gamma;
  for (auto& g : g_ref) g *= ref_gamma_scale;
  LayerNormParams r = p;
  r.x = x.data();
  r.y = ref.data();
  r.gamma = s.affine ? g_ref.data() : nullptr;
  r.beta = s.affine ? beta.data() : nullptr;
  r.dtype = DType::F32;
  layer_norm_ref(r);

  const DevTensor& out = in_place ? dx : dy;
  const std::string what = name_of(s, t, in_place) + " [" + layer_norm_path_name(l.path) +
                           " vec=" + std::to_string(l.vec) + " vpt=" + std::to_string(l.vecs_per_thread) + "]";
  const std::vector<float> got = out.download();
  const double e = nmse(got, ref);
  if (!expect_pass) return e;
  expect_output_ok(out, ref, what);
  expect_near_rounding_floor(e, ref, t, what);
  return e;
}

const LnCase kShapes[] = {
    // SD 1.x UNet2DConditionModel transformer blocks at 512x512, batch 1 with CFG (2 rows per token).
    {2 * 4096, 320}, {2 * 1024, 640}, {2 * 256, 1280}, {2 * 64, 1280},
    // CLIP text encoders (SD 1.x: 768, SD 2.x: 1024), 77 tokens, with and without CFG.
    {77, 768}, {154, 768}, {77, 1024}, {154, 1024},
    // Awkward widths: scalar warp path (1, 3, 33, 99, 201), scalar block path (257, 1025), streamed (4097;
    // 20000 fp32 at vec 4 is 5000 vectors > 4096), vector warp/block paths for every vecs_per_thread.
    {1, 1}, {5, 1}, {77, 3}, {1, 33}, {77, 33}, {11, 99}, {13, 201}, {3, 257}, {2, 1025}, {3, 4097},
    {2, 20000}, {1, 40000},
    {7, 64}, {9, 256}, {9, 512}, {33, 1000}, {5, 2048}, {3, 4096}, {2, 8192}, {2, 16384}, {1, 32768},
    // Misaligned by one element: scalar paths at SD widths.
    {2 * 256, 320, 0, 1, 1}, {77, 768, 0, 1, 1}, {64, 1280, 0, 1, 1},
};

TEST(LayerNormGpu, ShapesAndDtypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (const LnCase& s : kShapes)
    for (DType t : kAllDtypes) run_case(s, t, false);
  // Every (path, vector width, vecs_per_thread) the launcher can pick for some C <= 40000, dtype and
  // alignment must have run at least once above.
  alignas(16) static char buf[64];
  std::set<PathKey> reachable;
  for (DType t : kAllDtypes)
    for (int misalign : {0, 1})
      for (int c = 1; c <= 40000; ++c) {
        LayerNormParams p;
        p.x = p.gamma = p.beta = buf;
        p.y = buf + misalign * dtype_size(t);
        p.c = c;
        p.dtype = t;
        const LayerNormLaunch l = layer_norm_cuda_launch(p);
        reachable.insert({int(l.path), l.vec == 1 ? 1 : 16, l.vecs_per_thread});
      }
  for (const PathKey& k : reachable)
    EXPECT_TRUE(seen_paths().count(k)) << "path " << layer_norm_path_name(LayerNormPath(std::get<0>(k))) << " vec "
                                       << std::get<1>(k) << " bytes, vpt " << std::get<2>(k) << " never ran";
}

TEST(LayerNormGpu, InPlace) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const LnCase cases[] = {{2 * 1024, 640}, {2 * 64, 1280}, {77, 33}, {3, 4097}, {2, 20000}, {64, 1280, 0, 1, 1}};
  for (const LnCase& s : cases)
    for (DType t : kAllDtypes) run_case(s, t, true);
}

TEST(LayerNormGpu, NoAffine) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const LnCase cases[] = {{2 * 256, 1280, 0, 1, 0, false}, {77, 768, 0, 1, 0, false}, {5, 33, 0, 1, 0, false}};
  for (const LnCase& s : cases)
    for (DType t : kAllDtypes) run_case(s, t, false);
}

// Means far from zero relative to the spread: catches E[x^2] - E[x]^2 cancellation and an inexact mean
// (the corrected two-pass keeps the fp32 statistics exact here). The 1e4 offset runs in fp32 only: fp16
// and bf16 space their values 8 and 64 apart at 1e4, so N(0, 1) around it would not survive the input
// rounding.
TEST(LayerNormGpu, LargeMeanOffset) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2 * 1024, 640, 100.0f, 1.0f}, t, false);
    run_case({2 * 64, 1280, 30.0f, 0.5f}, t, false);
    run_case({3, 4097, 50.0f, 1.0f}, t, false);
  }
  run_case({2 * 1024, 640, 1e4f, 1.0f}, DType::F32, false);
  run_case({2 * 64, 1280, 1e4f, 1.0f}, DType::F32, true);
}

// More rows than one capped grid sweep (2^20 blocks x 4 rows on the warp path): the row loop must run.
// ("Larger" in the name keeps it out of the compute-sanitizer pass of scripts/gpu_pass.sh: 12.6M elements.)
TEST(LayerNormGpu, LargerThanOneGridSweep) {
  DIFFRT_SKIP_WITHOUT_GPU();
  run_case({(1LL << 22) + 77, 3}, DType::F16, false);
}

TEST(LayerNormGpu, MetricDetectsErrors) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    const double e = run_case({2 * 256, 1280}, t, false, 1.01f, false);
    EXPECT_GT(e, dtype_tolerance(t)) << "a 1% gamma error went unnoticed for " << dtype_name(t);
  }
}

// Argument validation happens before any CUDA call, so this runs (and must pass) without a GPU too.
TEST(LayerNormGpu, RejectsBadArguments) {
  alignas(16) static float buf[256];
  LayerNormParams ok;
  ok.x = buf;
  ok.y = buf + 64;
  ok.gamma = buf + 128;
  ok.beta = buf + 160;
  ok.rows = 2;
  ok.c = 16;
  auto expect_invalid = [](const LayerNormParams& p, const char* what) {
    test::expect_invalid_args([](const LayerNormParams& q) { layer_norm_cuda(q, nullptr); }, p, what);
  };
  LayerNormParams p = ok; p.c = 0; expect_invalid(p, "c = 0");
  p = ok; p.rows = -1; expect_invalid(p, "rows < 0");
  p = ok; p.eps = -1.0f; expect_invalid(p, "negative eps");
  p = ok; p.eps = std::numeric_limits<float>::quiet_NaN(); expect_invalid(p, "NaN eps");
  p = ok; p.x = nullptr; expect_invalid(p, "null x");
  p = ok; p.y = nullptr; expect_invalid(p, "null y");
  p = ok; p.y = buf + 1; expect_invalid(p, "y partially overlaps x");
  p = ok; p.gamma = buf + 70; expect_invalid(p, "gamma inside y");
  p = ok; p.beta = buf + 64; expect_invalid(p, "beta inside y");
  p = ok; p.dtype = static_cast<DType>(7); expect_invalid(p, "bad dtype");
  p = ok; p.rows = 1LL << 62; expect_invalid(p, "size overflow");
  LayerNormParams empty;  // rows = 0: no-op, nothing touched, no CUDA call
  empty.c = 8;
  EXPECT_NO_THROW(layer_norm_cuda(empty, nullptr));
}

}  // namespace
}  // namespace diffrt::test
