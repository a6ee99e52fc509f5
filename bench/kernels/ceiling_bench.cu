// Ceilings of diffrt_kernel_bench ("yardsticks"), measured first in every run; every op row's roof% is judged
// against them:
//   copy/memcpy_d2d   cudaMemcpyAsync device->device of 1 GiB;   GB/s = 2 * bytes / t (read + write)
//   copy/kernel       grid-stride 16-byte copy kernel, 1 GiB;     GB/s = 2 * bytes / t
//   gemm/<dtype>/S    cublasGemmEx S x S x S, fp32 accumulate;    TFLOP/s = 2 S^3 / t
//                     fp16 and bf16 (S = 4096, 8192); fp32 with CUBLAS_COMPUTE_32F and default math (no TF32,
//                     S = 8192); tf32 (CUBLAS_COMPUTE_32F_FAST_TF32, S = 8192) for reference only.
//   COPY = max(copy rows) GB/s, GEMM[dtype] = max(gemm rows of that dtype) TFLOP/s (fp32 cases use fp32).
#include <cublas_v2.h>

#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"

namespace bench {
namespace {

__global__ void copy_kernel(const int4* __restrict__ a, int4* __restrict__ b, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    b[i] = a[i];
}

}  // namespace

void add_ceiling_cases(std::vector<Case>& cases, const Options& o) {
  cases.push_back({"ceiling", "copy_1GiB", "bytes", [](Ctx& c) {
    const size_t bytes = size_t(1) << 30;
    diffrt::DeviceBuffer a(bytes), b(bytes);
    bench::fill_uniform(a.get(), bytes / 4, DType::F32, 7, -1, 1, c.stream);
    c.measure("memcpy_d2d", 0, 2.0 * bytes, [&] {
      DIFFRT_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, c.stream));
    }, "read+write", true);
    c.measure("copy_kernel", 0, 2.0 * bytes, [&] {
      size_t n = bytes / 16;
      copy_kernel<<<ew_blocks(n), 256, 0, c.stream>>>(a.as<int4>(), b.as<int4>(), n);
      DIFFRT_CUDA_CHECK_LAUNCH();
    }, "read+write, 16-byte accesses", true);
  }});
  struct G { DType t; int s; cublasComputeType_t ct; std::string label; };
  std::vector<G> gs = {{DType::F16, 4096, CUBLAS_COMPUTE_32F, "fp16"},   {DType::F16, 8192, CUBLAS_COMPUTE_32F, "fp16"},
                       {DType::BF16, 4096, CUBLAS_COMPUTE_32F, "bf16"},  {DType::BF16, 8192, CUBLAS_COMPUTE_32F, "bf16"},
                       {DType::F32, 8192, CUBLAS_COMPUTE_32F, "fp32"},
                       {DType::F32, 8192, CUBLAS_COMPUTE_32F_FAST_TF32, "tf32"}};
  if (o.quick) gs = {{DType::F16, 8192, CUBLAS_COMPUTE_32F, "fp16"}, {DType::BF16, 8192, CUBLAS_COMPUTE_32F, "bf16"},
                     {DType::F32, 8192, CUBLAS_COMPUTE_32F, "fp32"}};
  for (const G& g : gs) {
    cases.push_back({"ceiling", "gemm_" + std::to_string(g.s) + "^3", g.label, [g](Ctx& c) {
      size_t n = size_t(g.s) * g.s;
      bench::DevArray a(n, g.t, 11), b(n, g.t, 12), d(n, g.t, 13);
      float alpha = 1.f, beta = 0.f;
      double flops = 2.0 * g.s * double(g.s) * g.s;
      c.measure("cublasGemmEx", flops, 3.0 * n * diffrt::dtype_size(g.t), [&] {
        DIFFRT_CUDA_CHECK(cublasGemmEx(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, g.s, g.s, g.s, &alpha, a.get(), cuda_type(g.t), g.s,
                                       b.get(), cuda_type(g.t), g.s, &beta, d.get(), cuda_type(g.t), g.s, g.ct,
                                       CUBLAS_GEMM_DEFAULT));
      }, g.ct == CUBLAS_COMPUTE_32F_FAST_TF32 ? "TF32 tensor cores, reference only" : "fp32 accumulate", true);
    }});
  }
}

}  // namespace bench
