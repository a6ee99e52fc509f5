// CudnnConv vs conv2d_ref: the convolutions of the DDPM CIFAR-10 UNet (conv_in 3->128, 3x3 128/256,
// 1x1 shortcuts, stride-2 downsampling with symmetric and asymmetric padding, conv_out 128->3), odd
// shapes, bias / residual / out_scale epilogues, N = 1 and 4, all dtypes, and plan reuse (second call of
// the same shape). fp32 bound is 1e-9 instead of 1e-10: cuDNN may pick Winograd/FFT algorithms whose
// fp32 rounding error is a few times that of direct summation.
#include "kernels/conv/conv.h"

#include <string>
#include <vector>

#include "kernels/conv/conv_cuda.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct ConvCase {
  int n, h, w, cin, cout, k, stride, pt, pl, pb, pr;
  bool bias, residual;
  float scale;
};

void run_case(CudnnConv& ctx, const ConvCase& s, DType t, int repeats = 1) {
  Conv2dParams p;
  p.n = s.n;
  p.h = s.h;
  p.w_in = s.w;
  p.cin = s.cin;
  p.cout = s.cout;
  p.kh = p.kw = s.k;
  p.stride = s.stride;
  p.pad_top = s.pt;
  p.pad_left = s.pl;
  p.pad_bottom = s.pb;
  p.pad_right = s.pr;
  p.out_scale = s.scale;
  p.dtype = t;
  const int ho = conv_out_dim(s.h, s.k, s.stride, s.pt, s.pb), wo = conv_out_dim(s.w, s.k, s.stride, s.pl, s.pr);
  const size_t xc = size_t(s.n) * s.h * s.w * s.cin, wc = size_t(s.cout) * s.k * s.k * s.cin;
  const size_t yc = size_t(s.n) * ho * wo * s.cout;
  const uint32_t seed = uint32_t(s.h * 31 + s.cin * 7 + s.cout + s.k + s.stride * 5);
  std::vector<float> x = random_normal(xc, seed);
  std::vector<float> w = random_normal(wc, seed + 1, 0.0f, 1.0f / std::sqrt(float(s.k * s.k * s.cin)));
  std::vector<float> bias = random_normal(s.cout, seed + 2, 0.0f, 0.5f);
  std::vector<float> res = random_normal(yc, seed + 3);
  DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), db = upload_rounded(bias, t);
  DevTensor dr = upload_rounded(res, t);
  DevTensor dy(yc, t);
  p.x = dx.ptr();
  p.w = dw.ptr();
  p.bias = s.bias ? db.ptr() : nullptr;
  p.residual = s.residual ? dr.ptr() : nullptr;
  p.y = dy.ptr();
  for (int rep = 0; rep < repeats; ++rep) {
    dy.poison();
    ctx.forward(p, nullptr);
  }

  std::vector<float> ref(yc);
  Conv2dParams r = p;
  r.x = x.data();
  r.w = w.data();
  r.bias = s.bias ? bias.data() : nullptr;
  r.residual = s.residual ? res.data() : nullptr;
  r.y = ref.data();
  r.dtype = DType::F32;
  std::vector<float> scratch(conv2d_ref_scratch_floats(r));
  conv2d_ref(r, scratch.data());

  const std::string what = "conv n=" + std::to_string(s.n) + " " + std::to_string(s.h) + "x" + std::to_string(s.w) +
                           "x" + std::to_string(s.cin) + "->" + std::to_string(s.cout) + " k" + std::to_string(s.k) +
                           " s" + std::to_string(s.stride) + " pad " + std::to_string(s.pt) + std::to_string(s.pl) +
                           std::to_string(s.pb) + std::to_string(s.pr) + (s.bias ? " bias" : "") +
                           (s.residual ? " res" : "") + " scale " + std::to_string(s.scale) + " " + dtype_name(t);
  expect_output_ok(dy, ref, what, t == DType::F32 ? 1e-9 : -1);
}

const ConvCase kCases[] = {
    // CIFAR-10 DDPM UNet
    {1, 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, true, false, 1.0f},       // conv_in
    {4, 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, true, false, 1.0f},
    {1, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1, true, false, 1.0f},     // resnet conv1
    {4, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1, true, true, 1.0f},      // resnet conv2 + residual
    {1, 16, 16, 128, 256, 3, 1, 1, 1, 1, 1, true, false, 1.0f},
    {4, 16, 16, 128, 256, 1, 1, 0, 0, 0, 0, true, false, 1.0f},     // 1x1 shortcut
    {2, 8, 8, 256, 256, 3, 1, 1, 1, 1, 1, true, true, 0.70710678f},  // residual + output_scale_factor
    {2, 32, 32, 128, 128, 3, 2, 1, 1, 1, 1, true, false, 1.0f},     // Downsample2D padding=1
    {2, 32, 32, 128, 128, 3, 2, 0, 0, 1, 1, true, false, 1.0f},     // Downsample2D padding=0 (asym)
    {1, 4, 4, 256, 256, 3, 1, 1, 1, 1, 1, true, false, 1.0f},
    {4, 32, 32, 128, 3, 3, 1, 1, 1, 1, 1, true, false, 1.0f},       // conv_out
    // odd shapes
    {1, 5, 7, 3, 5, 3, 2, 1, 1, 1, 1, true, false, 1.0f},
    {2, 9, 9, 12, 20, 3, 1, 1, 1, 1, 1, false, true, 0.5f},
    {1, 7, 6, 8, 8, 3, 2, 0, 0, 1, 1, false, false, 2.0f},
    {3, 11, 13, 16, 24, 1, 1, 0, 0, 0, 0, true, true, 1.0f},
    {1, 6, 6, 16, 16, 3, 1, 0, 1, 2, 1, true, false, 1.0f},         // fully asymmetric
};

TEST(ConvGpu, CifarUnetAndOddShapes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudnnConv ctx;
  for (const ConvCase& s : kCases)
    for (DType t : kAllDtypes) run_case(ctx, s, t);
}

// Second call of a cached plan; heuristic (non-exhaustive) selection.
TEST(ConvGpu, PlanReuseAndHeuristicSelection) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudnnConv ctx;
  run_case(ctx, kCases[3], DType::F16, 3);
  CudnnConv::Options o;
  o.exhaustive_search = false;
  CudnnConv heuristic(o);
  for (DType t : kAllDtypes) {
    run_case(heuristic, kCases[2], t);
    run_case(heuristic, kCases[8], t);
  }
}

// In-place residual: y == residual.
TEST(ConvGpu, ResidualAliasesOutput) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudnnConv ctx;
  for (DType t : kAllDtypes) {
    const int n = 2, h = 8, c = 64;
    const size_t cnt = size_t(n) * h * h * c;
    std::vector<float> x = random_normal(cnt, 5), w = random_normal(size_t(c) * 9 * c, 6, 0.0f, 0.05f);
    std::vector<float> res = random_normal(cnt, 7);
    DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), dy = upload_rounded(res, t);
    Conv2dParams p;
    p.n = n; p.h = h; p.w_in = h; p.cin = c; p.cout = c; p.kh = p.kw = 3;
    p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
    p.dtype = t;
    p.x = dx.ptr(); p.w = dw.ptr(); p.y = dy.ptr(); p.residual = dy.ptr();
    ctx.forward(p, nullptr);
    std::vector<float> ref(cnt);
    Conv2dParams r = p;
    r.x = x.data(); r.w = w.data(); r.residual = res.data(); r.y = ref.data(); r.dtype = DType::F32;
    std::vector<float> scratch(conv2d_ref_scratch_floats(r));
    conv2d_ref(r, scratch.data());
    expect_output_ok(dy, ref, std::string("conv residual==y ") + dtype_name(t), t == DType::F32 ? 1e-9 : -1);
  }
}

}  // namespace
}  // namespace diffrt::test
