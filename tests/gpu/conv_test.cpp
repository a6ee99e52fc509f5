// CudnnConv vs conv2d_ref: the convolutions of the DDPM CIFAR-10 UNet (conv_in 3->128, 3x3 128/256,
// 1x1 shortcuts, stride-2 downsampling with symmetric and asymmetric padding, conv_out 128->3), odd
// shapes, bias / residual / out_scale epilogues (each combination of bias and residual), N = 1 and 4, all
// dtypes, plan reuse (second call of the same shape), the batch split for cuDNN's 32-bit descriptors (with the
// threshold lowered through Options::max_tensor_elems so it splits at test sizes) and the epilogue's pre-fill
// kernel against a CPU loop. Each test counts the cases it ran (a GPU run never passes empty). fp32 bound is 1e-9 instead of 1e-10: cuDNN may pick Winograd/FFT algorithms whose
// fp32 rounding error is a few times that of direct summation.
#include "kernels/conv/conv.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"

#include "kernels/conv/conv_cuda.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct ConvCase {
  int n, h, w, cin, cout, k, stride, pt, pl, pb, pr;
  bool bias, residual;
  float scale;
};

int g_cases = 0;  // cases run (checked per test)

void run_case(CudnnConv& ctx, const ConvCase& s, DType t, int repeats = 1) {
  ++g_cases;
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
  p = with_operands(p, dx.ptr(), dw.ptr(), s.bias ? db.ptr() : nullptr, s.residual ? dr.ptr() : nullptr, dy.ptr());
  for (int rep = 0; rep < repeats; ++rep) {
    dy.poison();
    ctx.forward(p, nullptr);
  }

  std::vector<float> ref(yc);
  Conv2dParams r = with_operands(p, x.data(), w.data(), s.bias ? bias.data() : nullptr, s.residual ? res.data() : nullptr,
                                 ref.data());
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
  g_cases = 0;
  for (const ConvCase& s : kCases)
    for (DType t : kAllDtypes) run_case(ctx, s, t);
  EXPECT_EQ(g_cases, int(std::size(kCases)) * 3);
}

// Every epilogue: bias and residual, each alone, neither; with and without out_scale; in-place residual below.
TEST(ConvGpu, EpilogueCombinations) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudnnConv ctx;
  g_cases = 0;
  for (bool bias : {false, true})
    for (bool res : {false, true})
      for (float scale : {1.0f, 0.5f})
        for (DType t : kAllDtypes) {
          run_case(ctx, {2, 8, 8, 32, 48, 3, 1, 1, 1, 1, 1, bias, res, scale}, t);       // 16-byte pre-fill path
          run_case(ctx, {1, 5, 7, 6, 10, 3, 2, 0, 0, 1, 1, bias, res, scale}, t);         // scalar path, asym pad
        }
  EXPECT_EQ(g_cases, 2 * 2 * 2 * 3 * 2);
}

// Batches split for cuDNN's 32-bit tensor descriptors: with max_tensor_elems lowered, n = 5 runs as chunks
// (3 + 2, or 5 x 1), with asymmetric padding (per-chunk padded scratch), bias and residual; results must equal the
// unsplit reference. A single image above the limit is refused.
TEST(ConvGpu, BatchSplitMatchesReference) {
  DIFFRT_SKIP_WITHOUT_GPU();
  g_cases = 0;
  const ConvCase split_cases[] = {
      {5, 16, 16, 32, 32, 3, 1, 1, 1, 1, 1, true, true, 0.70710678f},
      {5, 16, 16, 32, 64, 3, 2, 0, 0, 1, 1, true, false, 1.0f},  // padded input 17x17x32 per image
      {5, 12, 10, 8, 16, 1, 1, 0, 0, 0, 0, false, true, 1.0f},
  };
  for (const ConvCase& s : split_cases) {
    Conv2dParams q;
    q.n = s.n; q.h = s.h; q.w_in = s.w; q.cin = s.cin; q.cout = s.cout; q.kh = q.kw = s.k; q.stride = s.stride;
    q.pad_top = s.pt; q.pad_left = s.pl; q.pad_bottom = s.pb; q.pad_right = s.pr;
    const int64_t per_image = std::max<int64_t>(
        int64_t(s.h + s.pt + s.pb) * (s.w + s.pl + s.pr) * s.cin,
        int64_t(conv_out_dim(s.h, s.k, s.stride, s.pt, s.pb)) * conv_out_dim(s.w, s.k, s.stride, s.pl, s.pr) * s.cout);
    for (int64_t per_chunk : {3, 1}) {
      CudnnConv::Options o;
      o.max_tensor_elems = per_image * per_chunk;
      ASSERT_EQ(conv_batch_chunks(q, o.max_tensor_elems).size(), size_t((s.n + per_chunk - 1) / per_chunk));
      CudnnConv ctx(o);
      for (DType t : kAllDtypes) run_case(ctx, s, t, 2);
    }
  }
  EXPECT_EQ(g_cases, 3 * 2 * 3);
  CudnnConv::Options o;
  o.max_tensor_elems = 1000;
  CudnnConv tiny(o);
  DevTensor x(size_t(16) * 16 * 8, DType::F32), w(size_t(8) * 9 * 8, DType::F32), y(size_t(16) * 16 * 8, DType::F32);
  Conv2dParams p;
  p.n = 1; p.h = p.w_in = 16; p.cin = p.cout = 8; p.kh = p.kw = 3;
  p.x = x.ptr(); p.w = w.ptr(); p.y = y.ptr();
  EXPECT_THROW(tiny.forward(p, nullptr), Error);  // 2048 elements per image > 1000: refused, not mis-run
}

// The pre-fill kernel alone: y = residual + bias, bias alone, residual alone, in place; vector and scalar paths
// (C a multiple of the 16-byte vector or not, offset pointers).
TEST(ConvGpu, BiasResidualFillMatchesCpu) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int cases = 0;
  for (DType t : kAllDtypes)
    for (int c : {64, 24, 7})
      for (size_t offset : {size_t(0), size_t(1)})
        for (int mode = 0; mode < 4; ++mode) {  // 0: res + bias, 1: bias, 2: residual, 3: in place res + bias
          const long long rows = 37;
          const size_t cnt = size_t(rows) * size_t(c);
          std::vector<float> res = random_normal(cnt, uint32_t(c + mode)), bias = random_normal(size_t(c), 9);
          DevTensor dr = upload_rounded(res, t, offset), db = upload_rounded(bias, t, offset);
          DevTensor dy(cnt, t, offset);
          dy.poison();
          const bool use_res = mode != 1, use_bias = mode != 2;
          std::vector<float> ref(cnt);
          for (size_t i = 0; i < cnt; ++i)
            ref[i] = (use_res ? res[i] : 0.0f) + (use_bias ? bias[i % size_t(c)] : 0.0f);
          round_to(t, ref);  // one rounding of the fp32 sum
          void* y = mode == 3 ? dr.ptr() : dy.ptr();
          conv_bias_residual_fill_cuda(y, use_res ? dr.ptr() : nullptr, use_bias ? db.ptr() : nullptr, rows, c, t,
                                       nullptr);
          sync_check();
          const DevTensor& out = mode == 3 ? dr : dy;
          EXPECT_TRUE(out.guards_intact());
          EXPECT_EQ(out.download(), ref) << dtype_name(t) << " c=" << c << " offset=" << offset << " mode=" << mode;
          ++cases;
        }
  EXPECT_EQ(cases, 3 * 3 * 2 * 4);
  EXPECT_THROW(conv_bias_residual_fill_cuda(nullptr, nullptr, nullptr, 1, 1, DType::F32, nullptr), Error);
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

// In-place residual: y == residual (with and without bias). The algorithm search must not write into y here (it
// holds the residual): the heuristic picks.
TEST(ConvGpu, ResidualAliasesOutput) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudnnConv ctx;
  int cases = 0;
  for (bool with_bias : {false, true})
    for (DType t : kAllDtypes) {
      const int n = 2, h = 8, c = 64;
      const size_t cnt = size_t(n) * h * h * c;
      std::vector<float> x = random_normal(cnt, 5), w = random_normal(size_t(c) * 9 * c, 6, 0.0f, 0.05f);
      std::vector<float> res = random_normal(cnt, 7), bias = random_normal(size_t(c), 8, 0.0f, 0.5f);
      DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), dy = upload_rounded(res, t);
      DevTensor db = upload_rounded(bias, t);
      Conv2dParams p;
      p.n = n; p.h = h; p.w_in = h; p.cin = c; p.cout = c; p.kh = p.kw = 3;
      p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
      p.dtype = t;
      p.x = dx.ptr(); p.w = dw.ptr(); p.y = dy.ptr(); p.residual = dy.ptr();
      p.bias = with_bias ? db.ptr() : nullptr;
      ctx.forward(p, nullptr);
      std::vector<float> ref(cnt);
      Conv2dParams r = p;
      r.x = x.data(); r.w = w.data(); r.residual = res.data(); r.y = ref.data(); r.dtype = DType::F32;
      r.bias = with_bias ? bias.data() : nullptr;
      std::vector<float> scratch(conv2d_ref_scratch_floats(r));
      conv2d_ref(r, scratch.data());
      expect_output_ok(dy, ref, std::string("conv residual==y ") + (with_bias ? "bias " : "") + dtype_name(t),
                       t == DType::F32 ? 1e-9 : -1);
      ++cases;
    }
  EXPECT_EQ(cases, 6);
}

}  // namespace
}  // namespace diffrt::test
