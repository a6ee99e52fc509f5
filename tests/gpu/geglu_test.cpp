// geglu_cuda vs geglu_ref: SD 1.x UNet feed-forward shapes (rows = 2*4096, 2*1024, 2*256, 2*64 tokens at
// F = 4C = 1280, 2560, 5120), awkward ones (F = 1, 3, 17, 33, 4097; rows = 1, 77; more rows than the
// 65535-row grid), misaligned pointers that force scalar accesses, gate values deep in both tails, all
// dtypes, guard bytes. Method and bounds: gpu_test_util.h; for fp16/bf16 the error must also stay within 3x
// the error of rounding the exact result to the storage type (fp32 math, one rounding).
#include <string>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct GgCase {
  long long rows;
  int f;
  float gate_std = 1.0f;
  size_t x_off = 0, y_off = 0;  // element offsets (odd ones force scalar accesses)
};

double run_case(const GgCase& s, DType t, float ref_scale = 1.0f, bool expect_pass = true) {
  const size_t xc = size_t(s.rows) * 2 * s.f, yc = size_t(s.rows) * s.f;
  const uint32_t seed = uint32_t(s.rows * 13 + s.f * 3 + int(t));
  std::vector<float> x = random_normal(xc, seed, 0.0f, 1.0f);
  const std::vector<float> gates = random_normal(yc, seed + 1, 0.0f, s.gate_std);
  for (long long r = 0; r < s.rows; ++r)  // gate half of each row gets its own spread
    for (int j = 0; j < s.f; ++j) x[size_t(r) * 2 * s.f + s.f + j] = gates[size_t(r) * s.f + j];
  DevTensor dx = upload_rounded(x, t, s.x_off);
  DevTensor dy(yc, t, s.y_off);
  dy.poison();

  GegluParams p;
  p.x = dx.ptr();
  p.y = dy.ptr();
  p.rows = s.rows;
  p.f = s.f;
  p.dtype = t;
  geglu_cuda(p, nullptr);
  sync_check();

  std::vector<float> ref(yc);
  GegluParams r = p;
  r.x = x.data();
  r.y = ref.data();
  r.dtype = DType::F32;
  geglu_ref(r);
  for (float& v : ref) v *= ref_scale;

  const std::string what = "geglu rows=" + std::to_string(s.rows) + " f=" + std::to_string(s.f) + " " +
                           dtype_name(t) + (s.x_off || s.y_off ? " misaligned" : "") +
                           (s.gate_std != 1.0f ? " gate_std=" + std::to_string(s.gate_std) : "");
  const double e = nmse(dy.download(), ref);
  if (!expect_pass) return e;
  expect_output_ok(dy, ref, what);
  EXPECT_TRUE(dx.guards_intact()) << what << ": x written around";
  expect_near_rounding_floor(e, ref, t, what);
  return e;
}

TEST(GegluGpu, ShapesAndDtypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const GgCase cases[] = {
      {2 * 4096, 1280}, {2 * 1024, 2560}, {2 * 256, 5120}, {2 * 64, 5120},  // SD 1.x FF (inner = 4C)
      {77, 3072},                                                         // CLIP-sized MLP width
      {1, 1}, {3, 3}, {77, 17}, {5, 33}, {2, 4097}, {1, 8}, {9, 4},       // awkward widths
      {64, 1280, 1.0f, 1, 0}, {64, 1280, 1.0f, 0, 1}, {7, 40, 1.0f, 1, 1},  // misaligned x or y
      {2 * 64, 1280, 8.0f}, {3, 33, 20.0f},                               // gates deep in both tails
  };
  for (const GgCase& s : cases)
    for (DType t : kAllDtypes) run_case(s, t);
}

// More rows than the grid's 65535 y-blocks: the row loop must run (vector and scalar widths). ("Larger" in
// the name keeps it out of the compute-sanitizer pass of scripts/gpu_pass.sh.)
TEST(GegluGpu, LargerThanOneGridSweep) {
  DIFFRT_SKIP_WITHOUT_GPU();
  run_case({65535 + 77, 16}, DType::F16);
  run_case({65535 * 2 + 3, 5}, DType::F32);
}

TEST(GegluGpu, MetricDetectsErrors) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    const double e = run_case({2 * 256, 1280}, t, 1.01f, false);
    EXPECT_GT(e, dtype_tolerance(t)) << "a 1% error went unnoticed for " << dtype_name(t);
  }
}

// Argument validation happens before any CUDA call, so this runs (and must pass) without a GPU too.
TEST(GegluGpu, RejectsBadArguments) {
  alignas(16) static float buf[256];
  GegluParams ok;
  ok.x = buf;        // [2, 32]
  ok.y = buf + 64;   // [2, 16]
  ok.rows = 2;
  ok.f = 16;
  auto expect_invalid = [](const GegluParams& p, const char* what) {
    test::expect_invalid_args([](const GegluParams& q) { geglu_cuda(q, nullptr); }, p, what);
  };
  GegluParams p = ok; p.f = 0; expect_invalid(p, "f = 0");
  p = ok; p.rows = -1; expect_invalid(p, "rows < 0");
  p = ok; p.x = nullptr; expect_invalid(p, "null x");
  p = ok; p.y = nullptr; expect_invalid(p, "null y");
  p = ok; p.y = buf; expect_invalid(p, "y aliases x");
  p = ok; p.y = buf + 63; expect_invalid(p, "y overlaps the end of x");
  p = ok; p.dtype = static_cast<DType>(9); expect_invalid(p, "bad dtype");
  p = ok; p.rows = 1LL << 62; expect_invalid(p, "size overflow");
  GegluParams empty;  // rows = 0: no-op
  empty.f = 4;
  EXPECT_NO_THROW(geglu_cuda(empty, nullptr));
}

}  // namespace
}  // namespace diffrt::test
