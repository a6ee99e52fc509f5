// linear_cuda (cuBLASLt) vs linear_ref: UNet linear shapes (time embedding MLP, temb projections, CIFAR
// attention qkv / out projections, SD projections) plus odd sizes; every epilogue combination (bias,
// residual, out_scale != 1 with and without bias, silu_input); all dtypes; plan reuse. fp32 runs with
// TF32 off (exact fp32), so the 1e-10 bound applies.
#include "kernels/gemm/gemm.h"

#include <string>
#include <vector>

#include "kernels/gemm/gemm_cuda.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct LinCase {
  int m, n, k;
  bool bias, residual, silu;
  float scale;
};

void run_case(CublasLtContext& ctx, const LinCase& s, DType t) {
  const uint32_t seed = uint32_t(s.m * 7 + s.n * 13 + s.k);
  std::vector<float> x = random_normal(size_t(s.m) * s.k, seed);
  std::vector<float> w = random_normal(size_t(s.n) * s.k, seed + 1, 0.0f, 1.0f / std::sqrt(float(s.k)));
  std::vector<float> bias = random_normal(s.n, seed + 2, 0.0f, 0.5f);
  std::vector<float> res = random_normal(size_t(s.m) * s.n, seed + 3);
  DevTensor dx = upload_rounded(x, t), dw = upload_rounded(w, t), db = upload_rounded(bias, t);
  DevTensor dr = upload_rounded(res, t);
  DevTensor dy(size_t(s.m) * s.n, t);
  dy.poison();
  LinearParams p =
      with_operands(LinearParams{}, dx.ptr(), dw.ptr(), s.bias ? db.ptr() : nullptr, s.residual ? dr.ptr() : nullptr, dy.ptr());
  p.m = s.m;
  p.n = s.n;
  p.k = s.k;
  p.silu_input = s.silu;
  p.out_scale = s.scale;
  p.dtype = t;
  linear_cuda(p, ctx, nullptr);

  std::vector<float> ref(size_t(s.m) * s.n);
  LinearParams r = with_operands(p, x.data(), w.data(), s.bias ? bias.data() : nullptr, s.residual ? res.data() : nullptr,
                                 ref.data());
  r.dtype = DType::F32;
  linear_ref(r);
  const std::string what = "linear m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" +
                           std::to_string(s.k) + (s.bias ? " bias" : "") + (s.residual ? " res" : "") +
                           (s.silu ? " silu" : "") + " scale " + std::to_string(s.scale) + " " + dtype_name(t);
  expect_output_ok(dy, ref, what);
}

const LinCase kCases[] = {
    {1, 512, 128, true, false, false, 1.0f},      // CIFAR time_embedding.linear_1
    {1, 512, 512, true, false, false, 1.0f},      // linear_2
    {8, 256, 512, true, false, true, 1.0f},       // resnet time_emb_proj(silu(temb))
    {2, 1280, 320, true, false, false, 1.0f},     // SD time embedding
    {2, 640, 1280, true, false, true, 1.0f},
    {256, 768, 256, true, false, false, 1.0f},    // CIFAR fused qkv at 16x16
    {1024, 256, 256, true, true, false, 0.70710678f},  // attention out proj + residual, rescale_output_factor
    {8192, 320, 320, true, true, false, 1.0f},    // SD 64x64 projection, batch 2
    {154, 320, 768, false, false, false, 1.0f},   // cross-attn k/v from text (2 x 77)
    {33, 24, 40, true, true, true, 0.5f},         // odd m, everything on
    {17, 40, 24, false, true, false, 2.0f},       // no bias, residual, scale
    {5, 8, 16, false, false, false, 3.0f},        // no bias, scale only
    {77, 64, 8, true, false, true, 1.0f},
};

TEST(GemmGpu, UnetShapesAndEpilogues) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CublasLtContext ctx;
  for (const LinCase& s : kCases)
    for (DType t : kAllDtypes) run_case(ctx, s, t);
  // Second pass reuses every cached plan.
  for (const LinCase& s : kCases) run_case(ctx, s, DType::F16);
}

// Odd k and n (2-byte aligned rows for fp16/bf16): fp32 only, where any ld is supported.
TEST(GemmGpu, OddSizesFp32) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CublasLtContext ctx;
  run_case(ctx, {7, 5, 3, true, true, true, 0.25f}, DType::F32);
  run_case(ctx, {1, 1, 1, true, false, false, 1.0f}, DType::F32);
  run_case(ctx, {3, 11, 129, false, true, false, 1.0f}, DType::F32);
}

TEST(GemmGpu, RejectsBadArguments) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CublasLtContext ctx;
  DevTensor buf(64, DType::F32);
  LinearParams p;
  p.x = p.w = buf.ptr();
  p.y = buf.ptr();  // aliases x
  p.m = p.n = p.k = 4;
  EXPECT_THROW(linear_cuda(p, ctx, nullptr), Error);
}

}  // namespace
}  // namespace diffrt::test
