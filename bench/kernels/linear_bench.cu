// linear cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   linear       y [M, N] = x [M, K] w [N, K]^T + bias.  F = 2 M N K, B = (M K + N K + M N + N) s.
//                impls: diffrt (linear_cuda through cuBLASLt, bias epilogue), cublas (cublasGemmEx, no bias).
// DiT's gated linear (gated_linear) is in dit_bench.cu.
#include <cublas_v2.h>

#include <cmath>
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "kernels/gemm/gemm_cuda.h"

namespace bench {

void add_linear_cases(std::vector<Case>& cases, const Options& o) {
  struct L { std::string name; int m, n, k; };
  std::vector<L> ls = {
      {"cifar_temb_512to512_M1", 1, 512, 512},          {"cifar_temb_512to512_M256", 256, 512, 512},
      {"cifar_qkv_256to768_B1", 256, 768, 256},         {"cifar_qkv_256to768_B256", 65536, 768, 256},
      {"cifar_attnout_256to256_B256", 65536, 256, 256}, {"celebahq_qkv_512to1536_B16", 4096, 1536, 512},
      {"sd64_q_320to320_B2", 8192, 320, 320},            {"sd64_geglu_320to2560_B2", 8192, 2560, 320},
      {"sd64_ffout_1280to320_B2", 8192, 320, 1280},      {"sd_crosskv_768to320_B2", 154, 320, 768},
      {"sd16_geglu_1280to10240_B2", 512, 10240, 1280},
  };
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const L& l : ls) {
      cases.push_back({"linear", l.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const float ws = 1.0f / std::sqrt(float(l.k));
        bench::DevArray x(size_t(l.m) * l.k, t, 51), w(size_t(l.n) * l.k, t, 52, -ws, ws), bias(l.n, t, 53),
            y(size_t(l.m) * l.n, t, 54);
        diffrt::LinearParams p;
        p.x = x.get(); p.w = w.get(); p.bias = bias.get(); p.y = y.get();
        p.m = l.m; p.n = l.n; p.k = l.k; p.dtype = t;
        const double flops = 2.0 * l.m * double(l.n) * l.k;
        const double bytes = (double(l.m) * l.k + double(l.n) * l.k + double(l.m) * l.n + l.n) * diffrt::dtype_size(t);
        c.measure("diffrt", flops, bytes, [&] { diffrt::linear_cuda(p, *c.lt, c.stream); }, "cuBLASLt + bias epilogue");
        const float one = 1.f, zero = 0.f;
        c.measure("cublas", flops, bytes, [&] {
          DIFFRT_CUDA_CHECK(cublasGemmEx(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, l.n, l.m, l.k, &one, w.get(), cuda_type(t), l.k,
                                         x.get(), cuda_type(t), l.k, &zero, y.get(), cuda_type(t), l.n, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
        }, "cublasGemmEx, no bias");
      }});
    }
}

}  // namespace bench
