// layer_norm cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   layer_norm   x [rows, C] -> y over the last dim, affine.  B = 2 rows C s + 2 C s, F = 0.
//                impls: diffrt (layer_norm_cuda; the note names the path it took), naive (a block per row,
//                scalar loads, three passes over the row: mean, centred variance, apply).
// DiT's modulated LayerNorm (ada_ln) is in dit_bench.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "bench/kernels/baseline_math.cuh"
#include "bench/kernels/sd_tokens.cuh"
#include "kernels/layer_norm/layer_norm.h"

namespace bench {
namespace {

// Naive LayerNorm: a block per row, scalar loads, mean pass, centred variance pass, apply pass.
template <class T>
__global__ void ln_naive(const T* x, T* y, const T* gamma, const T* beta, int c, float eps) {
  __shared__ float sm[32];
  const T* xr = x + size_t(blockIdx.x) * c;
  T* yr = y + size_t(blockIdx.x) * c;
  float s = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) s += ld(xr, j);
  const float mean = block_sum(s, sm) / float(c);
  float q = 0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    float d = ld(xr, j) - mean;
    q += d * d;
  }
  const float rstd = rsqrtf(block_sum(q, sm) / float(c) + eps);
  for (int j = threadIdx.x; j < c; j += blockDim.x) st(yr, j, (ld(xr, j) - mean) * rstd * ld(gamma, j) + ld(beta, j));
}

}  // namespace

void add_layer_norm_cases(std::vector<Case>& cases, const Options& o) {
  std::vector<TokenShape> shapes(std::begin(kSdTokens), std::end(kSdTokens));
  shapes.push_back({"clip_T77x768_B2", 2 * 77, 768});
  shapes.push_back({"clip_T77x1024_B2", 2 * 77, 1024});
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const TokenShape& s : shapes)
      cases.push_back({"layer_norm", s.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const size_t count = size_t(s.rows) * s.c;
        bench::DevArray x(count, t, 71, -1.f, 3.f), y(count, t, 72), gamma(s.c, t, 73, 0.5f, 1.5f), beta(s.c, t, 74);
        diffrt::LayerNormParams p;
        p.x = x.get(); p.y = y.get(); p.gamma = gamma.get(); p.beta = beta.get();
        p.rows = s.rows; p.c = s.c; p.eps = 1e-5f; p.dtype = t;
        const diffrt::LayerNormLaunch l = diffrt::layer_norm_cuda_launch(p);
        const std::string note = std::string(diffrt::layer_norm_path_name(l.path)) + ", " +
                                 std::to_string(l.vec * diffrt::dtype_size(t)) + "-byte x" +
                                 std::to_string(l.vecs_per_thread) + "/thread, " + std::to_string(l.threads_per_row) +
                                 " threads/row";
        const double bytes = 2.0 * count * diffrt::dtype_size(t) + 2.0 * s.c * diffrt::dtype_size(t);
        c.measure("diffrt", 0, bytes, [&] { diffrt::layer_norm_cuda(p, c.stream); }, note);
        c.measure("naive", 0, bytes, [&] {
          dispatch_dtype(t, [&](auto tag) {
            using T = decltype(tag);
            ln_naive<T><<<unsigned(s.rows), 256, 0, c.stream>>>(x.as<T>(), y.as<T>(), gamma.as<T>(), beta.as<T>(), s.c, 1e-5f);
          });
          DIFFRT_CUDA_CHECK_LAUNCH();
        }, "block per row, scalar, 3 passes");
      }});
}

}  // namespace bench
