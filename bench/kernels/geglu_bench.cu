// geglu cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   geglu        x [rows, 2F] -> y [rows, F] = x[:, :F] * gelu_erf(x[:, F:]).  B = 3 rows F s, F = 0.
//                impls: diffrt (geglu_cuda), eager (as diffusers runs it in PyTorch: F.gelu on the gate
//                view into a [rows, F] temporary, then hidden view * temporary: 5 rows F s bytes).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "bench/kernels/baseline_math.cuh"
#include "bench/kernels/sd_tokens.cuh"
#include "kernels/elementwise/elementwise.h"

namespace bench {
namespace {

// Eager GEGLU as PyTorch runs diffusers' GEGLU: t = F.gelu(gate view) (a [rows, F] temporary), y = hidden * t.
template <class T>
__global__ void gelu_gate_eager(const T* x, T* t, size_t total, int f) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    float g = ld(x, (i / f) * 2 * f + f + i % f);
    st(t, i, 0.5f * g * (1.f + erff(g * 0.70710678118654752f)));
  }
}
template <class T>
__global__ void mul_hidden_eager(const T* x, const T* t, T* y, size_t total, int f) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x)
    st(y, i, ld(x, (i / f) * 2 * f + i % f) * ld(t, i));
}

}  // namespace

void add_geglu_cases(std::vector<Case>& cases, const Options& o) {
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const TokenShape& s : kSdTokens) {
      const int f = 4 * s.c;  // FeedForward inner dim; the projection makes 2F = 8C
      const std::string name = std::string(s.name) + "_F" + std::to_string(f);
      cases.push_back({"geglu", name, diffrt::dtype_name(t), [=](Ctx& c) {
        const size_t n_out = size_t(s.rows) * f;
        bench::DevArray x(2 * n_out, t, 81, -3.f, 3.f), y(n_out, t, 82), tmp(n_out, t, 83);
        diffrt::GegluParams p;
        p.x = x.get(); p.y = y.get(); p.rows = s.rows; p.f = f; p.dtype = t;
        const double bytes = 3.0 * n_out * diffrt::dtype_size(t);
        c.measure("diffrt", 0, bytes, [&] { diffrt::geglu_cuda(p, c.stream); });
        c.measure("eager", 0, bytes, [&] {
          dispatch_dtype(t, [&](auto tag) {
            using T = decltype(tag);
            gelu_gate_eager<T><<<ew_blocks(n_out), 256, 0, c.stream>>>(x.as<T>(), tmp.as<T>(), n_out, f);
            mul_hidden_eager<T><<<ew_blocks(n_out), 256, 0, c.stream>>>(x.as<T>(), tmp.as<T>(), y.as<T>(), n_out, f);
          });
          DIFFRT_CUDA_CHECK_LAUNCH();
        }, "2 kernels: gelu(gate) -> tmp, hidden * tmp");
      }});
    }
}

}  // namespace bench
