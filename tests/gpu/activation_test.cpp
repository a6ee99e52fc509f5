// activation_cuda vs activation_ref: every kind and dtype; CLIP MLP shapes (77/154 tokens x 3072 / 4096,
// the tiny fixture's 37), counts that are not vector multiples (scalar path), misaligned pointers, more
// elements than one grid sweep, in place, a wide input range (N(0, 4)), guard bytes and poisoned outputs.
// For fp16/bf16 the error must stay within 3x the error of rounding the exact result to the storage type.
#include <string>
#include <vector>

#include "kernels/activation/activation.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

constexpr ActivationKind kKinds[] = {ActivationKind::Gelu, ActivationKind::GeluTanh, ActivationKind::QuickGelu};

void run_case(long long count, DType t, ActivationKind k, size_t offset = 0, bool in_place = false) {
  std::vector<float> x = random_normal(size_t(count), uint32_t(count * 3 + int(k)), 0.0f, 4.0f);
  DevTensor dx = upload_rounded(x, t, offset);
  DevTensor dy(size_t(count), t, offset);
  dy.poison();
  ActivationParams p;
  p.x = dx.ptr();
  p.y = in_place ? dx.ptr() : dy.ptr();
  p.count = count;
  p.kind = k;
  p.dtype = t;
  activation_cuda(p, nullptr);
  std::vector<float> ref(static_cast<size_t>(count));
  ActivationParams r = p;
  r.x = x.data(); r.y = ref.data(); r.dtype = DType::F32;
  activation_ref(r);
  const std::string what = std::string(activation_name(k)) + " count=" + std::to_string(count) + " " + dtype_name(t) +
                           (offset ? " misaligned" : "") + (in_place ? " in-place" : "");
  const DevTensor& out = in_place ? dx : dy;
  expect_output_ok(out, ref, what);
  if (t != DType::F32) expect_near_rounding_floor(nmse(out.download(), ref), ref, t, what);
}

TEST(ActivationGpu, ShapesKindsDtypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const long long counts[] = {1, 7, 8, 77 * 37, 77 * 3072, 154 * 4096, 1000003};
  for (ActivationKind k : kKinds)
    for (DType t : kAllDtypes)
      for (long long n : counts) run_case(n, t, k);
}

TEST(ActivationGpu, MisalignedAndInPlace) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (ActivationKind k : kKinds)
    for (DType t : kAllDtypes) {
      run_case(77 * 3072, t, k, 1);
      run_case(77 * 3072, t, k, 0, true);
      run_case(33, t, k, 1, true);
    }
}

// More vectors than one capped grid sweep (2^20 blocks x 256 threads); "Larger" keeps it out of the
// compute-sanitizer pass.
TEST(ActivationGpu, LargerThanOneGridSweep) {
  DIFFRT_SKIP_WITHOUT_GPU();
  run_case((1LL << 28) + 5, DType::F16, ActivationKind::QuickGelu);
}

// Argument validation happens before any CUDA call, so this runs (and must pass) without a GPU too.
TEST(ActivationGpu, RejectsBadArguments) {
  alignas(16) static float buf[64];
  ActivationParams ok;
  ok.x = buf;
  ok.y = buf + 32;
  ok.count = 16;
  auto expect_invalid = [](const ActivationParams& p, const char* what) {
    test::expect_invalid_args([](const ActivationParams& q) { activation_cuda(q, nullptr); }, p, what);
  };
  ActivationParams p = ok; p.count = -1; expect_invalid(p, "negative count");
  p = ok; p.x = nullptr; expect_invalid(p, "null x");
  p = ok; p.y = buf + 1; expect_invalid(p, "partial overlap");
  p = ok; p.dtype = static_cast<DType>(7); expect_invalid(p, "bad dtype");
  p = ok; p.kind = static_cast<ActivationKind>(9); expect_invalid(p, "bad kind");
  p = ok; p.count = 1LL << 62; expect_invalid(p, "size overflow");
  ActivationParams empty;
  EXPECT_NO_THROW(activation_cuda(empty, nullptr));
}

}  // namespace
}  // namespace diffrt::test
