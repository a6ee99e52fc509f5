// DiT cases of diffrt_kernel_bench. DiT-XL/2 (D = 1152, 16 heads x 72, 28 blocks) at 256 px (256 tokens) and
// 512 px (1024 tokens), batch 1 with CFG (2 rows) and batch 32 with CFG (64 rows). Kept together rather than in
// layer_norm/linear: the three ops share the DiT shapes and their rows stay in the order they always had.
// Minimal bytes B and FLOPs F as in the other *_bench.cu files:
//   attention     rows in attention_bench.cu (dit256_*, dit512_*): head dim 72 -> the tensor-core kernel's 80
//                 bucket; the note names the bucket.
//   ada_ln        x [rows, 1152] -> LN(x) * (1 + scale[s]) + shift[s], no affine, shift/scale rows of the fused
//                 modulation vector [N, 195840].  B = 2 rows C s + 2 N C s, F = 0. impls: diffrt (layer_norm_cuda
//                 with modulation), plain (layer_norm_cuda without it: the cost of the modulation).
//   gated_linear  y = x + gate[s] * (h W^T + b) for attn1.to_out.0 (K = 1152) and ff.net.2 (K = 4608).
//                 F = 2 M N K, B = (M K + N K + 2 M N + N + N_s N) s. impls: diffrt (linear_cuda: cuBLASLt + bias
//                 epilogue, then one gate/residual pass), linear_residual (linear_cuda with a plain residual, beta = 1:
//                 what an epilogue-fused gate would cost).
//   patch_embed   x [N, H, W, 4] -> tokens [N, H/2, W/2, 1152] + the sin-cos table. F = 2 N L D 16,
//                 B = (N H W 4 + D 16 + D + N L D) s. impls: diffrt (patch_embed_cuda), judged against COPY.
#include <cmath>
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"

namespace bench {
namespace {

constexpr int kDiTD = 1152;
constexpr long long kDiTModWidth = 6LL * kDiTD * 28 + 2 * kDiTD;
struct DiTShape { const char* name; int n, tokens; };
const DiTShape kDiTShapes[] = {{"dit256_B1cfg", 2, 256}, {"dit256_B32cfg", 64, 256}, {"dit512_B1cfg", 2, 1024},
                               {"dit512_B32cfg", 64, 1024}};

}  // namespace

void add_dit_cases(std::vector<Case>& cases, const Options& o) {
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const DiTShape& s : kDiTShapes) {
      cases.push_back({"ada_ln", std::string(s.name) + "_C1152", diffrt::dtype_name(t), [=](Ctx& c) {
        const long long rows = (long long)s.n * s.tokens;
        const size_t count = size_t(rows) * kDiTD, es = diffrt::dtype_size(t);
        bench::DevArray x(count, t, 91, -1.f, 3.f), y(count, t, 92), mod(size_t(s.n) * kDiTModWidth, t, 93, -0.5f, 0.5f);
        diffrt::LayerNormParams p;
        p.x = x.get(); p.y = y.get(); p.rows = rows; p.c = kDiTD; p.eps = 1e-6f; p.dtype = t;
        p.shift = static_cast<char*>(mod.get()) + size_t(6 * kDiTD * 13) * es;  // block 13's norm3: shift_mlp
        p.scale = static_cast<char*>(mod.get()) + size_t(6 * kDiTD * 13 + kDiTD) * es;
        p.mod_ld = kDiTModWidth;
        p.rows_per_sample = s.tokens;
        const diffrt::LayerNormLaunch l = diffrt::layer_norm_cuda_launch(p);
        const double bytes = (2.0 * count + 2.0 * s.n * kDiTD) * es;
        c.measure("diffrt", 0, bytes, [&] { diffrt::layer_norm_cuda(p, c.stream); },
                  std::string(diffrt::layer_norm_path_name(l.path)) + ", vec " + std::to_string(l.vec));
        diffrt::LayerNormParams q = p;
        q.shift = q.scale = nullptr;
        c.measure("plain", 0, 2.0 * count * es, [&] { diffrt::layer_norm_cuda(q, c.stream); }, "no modulation");
      }});
      for (int k : {kDiTD, 4 * kDiTD}) {
        const std::string name = std::string(s.name) + (k == kDiTD ? "_attnout_K1152" : "_fc2_K4608");
        cases.push_back({"gated_linear", name, diffrt::dtype_name(t), [=](Ctx& c) {
          const int m = s.n * s.tokens;
          const float ws = 1.0f / std::sqrt(float(k));
          bench::DevArray x(size_t(m) * k, t, 94), w(size_t(kDiTD) * k, t, 95, -ws, ws), bias(kDiTD, t, 96),
              res(size_t(m) * kDiTD, t, 97), y(size_t(m) * kDiTD, t, 98),
              mod(size_t(s.n) * kDiTModWidth, t, 99, -0.5f, 0.5f);
          diffrt::LinearParams p;
          p.x = x.get(); p.w = w.get(); p.bias = bias.get(); p.residual = res.get(); p.y = y.get();
          p.m = m; p.n = kDiTD; p.k = k; p.dtype = t;
          p.gate = static_cast<char*>(mod.get()) + size_t(2 * kDiTD) * diffrt::dtype_size(t);
          p.gate_ld = kDiTModWidth;
          p.rows_per_gate = s.tokens;
          const double flops = 2.0 * m * double(kDiTD) * k;
          const double bytes = (double(m) * k + double(kDiTD) * k + 2.0 * m * kDiTD + kDiTD + double(s.n) * kDiTD) *
                               diffrt::dtype_size(t);
          c.measure("diffrt", flops, bytes, [&] { diffrt::linear_cuda(p, *c.lt, c.stream); },
                    "cuBLASLt + bias epilogue, then the gate/residual pass");
          diffrt::LinearParams q = p;
          q.gate = nullptr;
          c.measure("linear_residual", flops, bytes, [&] { diffrt::linear_cuda(q, *c.lt, c.stream); },
                    "cuBLASLt, residual as C (beta 1): an epilogue-fused gate's cost");
        }});
      }
      cases.push_back({"patch_embed", std::string(s.name) + "_p2_D1152", diffrt::dtype_name(t), [=](Ctx& c) {
        const int side = s.tokens == 256 ? 32 : 64, g = side / 2;
        bench::DevArray x(size_t(s.n) * side * side * 4, t, 100), w(size_t(kDiTD) * 16, t, 101, -0.25f, 0.25f),
            bias(kDiTD, t, 102), y(size_t(s.n) * g * g * kDiTD, t, 103);
        diffrt::PatchEmbedParams p;
        p.x = x.get(); p.w = w.get(); p.bias = bias.get(); p.y = y.get();
        p.n = s.n; p.h = p.w_in = side; p.cin = 4; p.dim = kDiTD; p.patch = 2; p.pos_embed = true;
        p.base_size = g; p.interpolation_scale = 1.0f; p.dtype = t;
        const double flops = 2.0 * s.n * double(g) * g * kDiTD * 16;
        const double bytes = (double(s.n) * side * side * 4 + kDiTD * 17.0 + double(s.n) * g * g * kDiTD) *
                             diffrt::dtype_size(t);
        c.measure("diffrt", flops, bytes, [&] { diffrt::patch_embed_cuda(p, c.stream); }, "conv + bias + sin-cos table");
      }});
    }
}

}  // namespace bench
