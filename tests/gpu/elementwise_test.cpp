// upsample2x_cuda / concat_cuda / affine_cuda vs their references: UNet shapes plus odd channel counts
// and misaligned pointers that force narrow words; all dtypes; guard bytes. upsample and concat move
// bits, so they must match exactly (nmse 0); affine uses the dtype bounds (fma vs mul+add rounding).
#include "kernels/elementwise/elementwise.h"

#include <string>
#include <vector>

#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

TEST(ElementwiseGpu, Upsample2x) {
  DIFFRT_SKIP_WITHOUT_GPU();
  struct Case { int n, h, w, c; size_t off; };
  const Case cases[] = {{1, 8, 8, 256, 0}, {4, 16, 16, 128, 0}, {2, 4, 4, 1280, 0},
                        {1, 5, 3, 3, 0},   {2, 7, 9, 5, 0},     {1, 4, 4, 64, 1}};
  for (const Case& s : cases)
    for (DType t : kAllDtypes) {
      std::vector<float> x = random_normal(size_t(s.n) * s.h * s.w * s.c, uint32_t(s.c + s.h));
      DevTensor dx = upload_rounded(x, t, s.off);
      const size_t yc = size_t(s.n) * 4 * s.h * s.w * s.c;
      DevTensor dy(yc, t, s.off);
      dy.poison();
      Upsample2xParams p;
      p.x = dx.ptr();
      p.y = dy.ptr();
      p.n = s.n; p.h = s.h; p.w = s.w; p.c = s.c;
      p.dtype = t;
      upsample2x_cuda(p, nullptr);
      std::vector<float> ref(yc);
      Upsample2xParams r = p;
      r.x = x.data(); r.y = ref.data(); r.dtype = DType::F32;
      upsample2x_ref(r);
      expect_output_ok(dy, ref, "upsample2x c=" + std::to_string(s.c) + " " + dtype_name(t), 1e-300);
    }
}

TEST(ElementwiseGpu, Concat) {
  DIFFRT_SKIP_WITHOUT_GPU();
  struct Case { long long pixels; int ca, cb; size_t off; };
  const Case cases[] = {{1024, 128, 128, 0}, {4 * 256, 256, 128, 0}, {81, 1280, 640, 0},
                        {7, 3, 5, 0},        {64, 8, 16, 1},         {2 * 16 * 16, 512, 256, 0}};
  for (const Case& s : cases)
    for (DType t : kAllDtypes) {
      std::vector<float> a = random_normal(size_t(s.pixels) * s.ca, 1), b = random_normal(size_t(s.pixels) * s.cb, 2);
      DevTensor da = upload_rounded(a, t, s.off), db = upload_rounded(b, t);
      const size_t yc = size_t(s.pixels) * (s.ca + s.cb);
      DevTensor dy(yc, t);
      dy.poison();
      ConcatParams p;
      p.a = da.ptr(); p.b = db.ptr(); p.y = dy.ptr();
      p.pixels = s.pixels; p.ca = s.ca; p.cb = s.cb;
      p.dtype = t;
      concat_cuda(p, nullptr);
      std::vector<float> ref(yc);
      ConcatParams r = p;
      r.a = a.data(); r.b = b.data(); r.y = ref.data(); r.dtype = DType::F32;
      concat_ref(r);
      expect_output_ok(dy, ref, "concat " + std::to_string(s.ca) + "+" + std::to_string(s.cb) + " " + dtype_name(t),
                       1e-300);
    }
}

TEST(ElementwiseGpu, Affine) {
  DIFFRT_SKIP_WITHOUT_GPU();
  struct Case { long long count; size_t off; bool in_place; };
  const Case cases[] = {{1, 0, false}, {7, 0, false}, {3 * 32 * 32 * 8, 0, false}, {1000003, 1, false},
                        {4096, 0, true}, {9, 1, true}};
  for (const Case& s : cases)
    for (DType t : kAllDtypes) {
      std::vector<float> x = random_uniform(size_t(s.count), 9, 0.0f, 1.0f);
      DevTensor dx = upload_rounded(x, t, s.off);
      DevTensor dy(size_t(s.count), t, s.off);
      dy.poison();
      AffineParams p;
      p.x = dx.ptr();
      p.y = s.in_place ? dx.ptr() : dy.ptr();
      p.count = s.count;
      p.scale = 2.0f;
      p.shift = -1.0f;
      p.dtype = t;
      affine_cuda(p, nullptr);
      std::vector<float> ref(size_t(s.count));
      AffineParams r = p;
      r.x = x.data(); r.y = ref.data(); r.dtype = DType::F32;
      affine_ref(r);
      round_to(t, ref);  // both sides round the fp32 result to the storage dtype
      expect_output_ok(s.in_place ? dx : dy, ref, "affine count=" + std::to_string(s.count) + " " + dtype_name(t));
    }
}

}  // namespace
}  // namespace diffrt::test
