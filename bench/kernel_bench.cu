// diffrt_kernel_bench: per-kernel GPU benchmark of diffrt's CUDA ops on real model shapes, each figure next
// to yardsticks measured in the same run. Method and timing: bench/bench_util.cuh; how to run and how the
// results become the README table: bench/README.md.
//
// Yardsticks ("ceilings"), measured first in every run:
//   copy/memcpy_d2d   cudaMemcpyAsync device->device of 1 GiB;   GB/s = 2 * bytes / t (read + write)
//   copy/kernel       grid-stride 16-byte copy kernel, 1 GiB;     GB/s = 2 * bytes / t
//   gemm/<dtype>/S    cublasGemmEx S x S x S, fp32 accumulate;    TFLOP/s = 2 S^3 / t
//                     fp16 and bf16 (S = 4096, 8192); fp32 with CUBLAS_COMPUTE_32F and default math (no TF32,
//                     S = 8192); tf32 (CUBLAS_COMPUTE_32F_FAST_TF32, S = 8192) for reference only.
//   COPY = max(copy rows) GB/s, GEMM[dtype] = max(gemm rows of that dtype) TFLOP/s (fp32 cases use fp32).
//
// Ops, minimal bytes B (each input read once, each output written once) and FLOPs F; s = dtype size:
//   group_norm   x [N, HW, C] -> y, G = 32, SiLU fused.  B = 2 N HW C s (+ 2 C s gamma/beta), F = 0.
//                impls: diffrt (group_norm_cuda: stats + apply, really 2 reads + 1 write, the 2nd read
//                mostly from L2), naive (one kernel per statistic: mean, variance, then apply: 3 reads +
//                1 write, one block per (n, group)).
//   layer_norm   x [rows, C] -> y over the last dim, affine.  B = 2 rows C s + 2 C s, F = 0.
//                impls: diffrt (layer_norm_cuda; the note names the path it took), naive (a block per row,
//                scalar loads, three passes over the row: mean, centred variance, apply).
//   geglu        x [rows, 2F] -> y [rows, F] = x[:, :F] * gelu_erf(x[:, F:]).  B = 3 rows F s, F = 0.
//                impls: diffrt (geglu_cuda), eager (as diffusers runs it in PyTorch: F.gelu on the gate
//                view into a [rows, F] temporary, then hidden view * temporary: 5 rows F s bytes).
//   attention    q [B, Lq, H d], k, v [B, Lkv, H d] -> o [B, Lq, H d].  F = 4 B H Lq Lkv d (QK^T and PV;
//                softmax not counted; causal cases count the visible (Lq + 1) / 2Lq of it),
//                B = (2 B Lq H d + 2 B Lkv H d) s. Causal cases (CLIP's text encoder) time diffrt only.
//                impls: diffrt (attention_cuda, fused), naive_cublas (cublasGemmBatchedEx S = Q K^T, one
//                softmax kernel writing P in the storage dtype, cublasGemmBatchedEx O = P V; S/P
//                materialised: extra 2 B H Lq Lkv s bytes each way). cuDNN's fused attention needs the
//                cudnn-frontend graph API, which this build does not have; cudnnMultiHeadAttnForward
//                (legacy, deprecated in cuDNN 9) is unfused and adds projections, so it is not used.
//   activation   y = act(x) over [rows, F] (CLIP MLP: quick_gelu at F = 3072 for SD 1.x, gelu at 4096 for
//                SD 2.x).  B = 2 rows F s, F = 0.  impls: diffrt (activation_cuda); judged against COPY.
//   embedding    y [B, 77, C] = token_table[ids] + pos_table (CLIP, vocab 49408).  B = (2 B 77 C + 77 C) s
//                + 4 B 77 (ids), F = 0.  impls: diffrt (embedding_cuda); judged against COPY.
//   conv         NHWC x [N, H, W, Cin] * KRSC w [Cout, k, k, Cin] + bias -> y [N, Ho, Wo, Cout].
//                F = 2 N Ho Wo Cout k k Cin, B = (N H W Cin + Cout k k Cin + N Ho Wo Cout + Cout) s.
//                impls: diffrt_cudnn (CudnnConv, exhaustive algorithm search: this IS diffrt's conv path),
//                cudnn_heuristic (same, cuDNN heuristic's first algorithm). fp32 without TF32.
//   linear       y [M, N] = x [M, K] w [N, K]^T + bias.  F = 2 M N K, B = (M K + N K + M N + N) s.
//                impls: diffrt (linear_cuda through cuBLASLt, bias epilogue), cublas (cublasGemmEx, no bias).
//   ada_ln, gated_linear, patch_embed: DiT-XL/2 ops, see bench/dit_cases.cuh.
//   sched        one fused DDIM (eta 0, eps, clip) or DDPM (fixed_large, Philox noise) update.
//                x fp32 [B, C, H, W]; model_out [Bm, ...] in the model dtype (Bm = 2B with CFG); the next
//                model input (model dtype) is written. B = Bm C HW sm (model_out) + 2 B C HW 4 (x in/out)
//                + Bm C HW sm (model_in), sm = model dtype size; F = 0.
//                impls: diffrt (scheduler_step_cuda_ex), eager (one kernel per torch op, fp32, as diffusers'
//                step runs in eager PyTorch: casts, CFG 3 ops, x0 3 ops, clamp, update 3-5 ops, cast back).
// Derived columns: GB/s = B / t_median, TFLOP/s = F / t_median, roof% = max(B / COPY, F / GEMM) / t_median
// (the fraction of the roofline bound reached; 100% is the floor).
//
// Flags: --filter REGEX (ECMAScript, searched in "op/case/dtype"), --reps N (max timed reps per case,
// default 100), --quick (fp16 only, fewer batches/dtypes, reps <= 30), --hot (no L2 flush), --json PATH,
// --budget-s S (skip remaining cases after S seconds of wall time; 0 = none), --list (print case ids, no GPU
// needed), --no-ceilings. Exit: 0 all ran, 1 some cases failed, 2 fatal CUDA error (JSON still written),
// 3 no CUDA device, 4 bad arguments.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.cuh"
#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "kernels/embedding/embedding.h"
#include "kernels/common/cuda_check.h"
#include "kernels/conv/conv_cuda.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "kernels/scheduler_step/scheduler_step_cuda.h"

#ifndef DIFFRT_BENCH_GIT_SHA
#define DIFFRT_BENCH_GIT_SHA "unknown"
#endif

using diffrt::DType;
using json = nlohmann::json;

namespace {

// SIGTERM/SIGINT (e.g. `timeout` in scripts/gpu_pass.sh) stop the run between cases; the JSON is still written.
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

// ================================ baseline kernels ==============================================

template <class T> __device__ __forceinline__ float ld(const T* p, size_t i);
template <> __device__ __forceinline__ float ld<float>(const float* p, size_t i) { return p[i]; }
template <> __device__ __forceinline__ float ld<__half>(const __half* p, size_t i) { return __half2float(p[i]); }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p, size_t i) {
  return __bfloat162float(p[i]);
}
template <class T> __device__ __forceinline__ void st(T* p, size_t i, float v);
template <> __device__ __forceinline__ void st<float>(float* p, size_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void st<__half>(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }
template <> __device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, size_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

__device__ __forceinline__ float block_sum(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  __syncthreads();
  if (l == 0) smem[w] = v;
  __syncthreads();
  float r = 0;
  for (int i = 0; i < int(blockDim.x >> 5); ++i) r += smem[i];
  return r;
}
__device__ __forceinline__ float block_max(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  __syncthreads();
  if (l == 0) smem[w] = v;
  __syncthreads();
  float r = -INFINITY;
  for (int i = 0; i < int(blockDim.x >> 5); ++i) r = fmaxf(r, smem[i]);
  return r;
}

// Naive GroupNorm, NHWC: block per (n, g); element i of the group is (row i / cpg, channel g*cpg + i % cpg).
template <class T>
__global__ void gn_naive_mean(const T* x, float* mean, int hw, int c, int groups) {
  __shared__ float sm[32];
  int ng = blockIdx.x, n = ng / groups, g = ng % groups, cpg = c / groups;
  size_t cnt = size_t(hw) * cpg;
  const T* base = x + size_t(n) * hw * c + size_t(g) * cpg;
  float s = 0;
  for (size_t i = threadIdx.x; i < cnt; i += blockDim.x) s += ld(base, (i / cpg) * c + i % cpg);
  s = block_sum(s, sm);
  if (threadIdx.x == 0) mean[ng] = s / float(cnt);
}
template <class T>
__global__ void gn_naive_var(const T* x, const float* mean, float* rstd, int hw, int c, int groups, float eps) {
  __shared__ float sm[32];
  int ng = blockIdx.x, n = ng / groups, g = ng % groups, cpg = c / groups;
  size_t cnt = size_t(hw) * cpg;
  const T* base = x + size_t(n) * hw * c + size_t(g) * cpg;
  float mu = mean[ng], s = 0;
  for (size_t i = threadIdx.x; i < cnt; i += blockDim.x) {
    float d = ld(base, (i / cpg) * c + i % cpg) - mu;
    s += d * d;
  }
  s = block_sum(s, sm);
  if (threadIdx.x == 0) rstd[ng] = rsqrtf(s / float(cnt) + eps);
}
template <class T>
__global__ void gn_naive_apply(const T* x, T* y, const T* gamma, const T* beta, const float* mean,
                               const float* rstd, size_t total, int hw, int c, int groups) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    int ch = int(i % c);
    int n = int(i / (size_t(hw) * c));
    int ng = n * groups + ch / (c / groups);
    float v = (ld(x, i) - mean[ng]) * rstd[ng] * ld(gamma, ch) + ld(beta, ch);
    v = v / (1.f + __expf(-v));
    st(y, i, v);
  }
}

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

// Row softmax in place over `cols` with a scale: p = exp(s*scale - max) / sum. One block per row.
template <class T>
__global__ void softmax_rows(T* s, int cols, float scale) {
  __shared__ float sm[32];
  T* row = s + size_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, ld(row, j) * scale);
  m = block_max(m, sm);
  float sum = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += __expf(ld(row, j) * scale - m);
  sum = block_sum(sum, sm);
  float inv = 1.f / sum;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) st(row, j, __expf(ld(row, j) * scale - m) * inv);
}

// Eager-style elementwise kernels (one torch op each), fp32.
__global__ void ew_scale(float* y, const float* a, float s, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = a[i] * s;
}
__global__ void ew_axpy(float* y, const float* a, float alpha, const float* b, size_t n) {  // y = a + alpha b
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + alpha * b[i];
}
__global__ void ew_clamp(float* y, const float* a, float lo, float hi, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = fminf(fmaxf(a[i], lo), hi);
}
template <class S, class D>
__global__ void ew_cast(D* y, const S* a, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    st(y, i, ld(a, i));
}

__global__ void copy_kernel(const int4* __restrict__ a, int4* __restrict__ b, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    b[i] = a[i];
}

inline unsigned ew_blocks(size_t n) { return unsigned(std::min<size_t>((n + 255) / 256, 132 * 16)); }

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

// ================================ harness =========================================================

struct Options {
  std::string filter;
  int reps = 100;
  bool quick = false, hot = false, list = false, ceilings = true;
  std::string json_path;
  double budget_s = 0;
  std::string command_line;
};

struct Result {
  std::string op, name, dtype, impl, note, error;
  bench::Stats st;
  double flops = 0, bytes = 0;
  bool ceiling = false;
};

class Fatal : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Ctx;
struct Case {
  std::string op, name, dtype;
  std::function<void(Ctx&)> body;
  std::string id() const { return op + "/" + name + "/" + dtype; }
};

struct Ctx {
  Options opt;
  cudaStream_t stream = nullptr;
  std::unique_ptr<bench::Timer> timer;
  cublasHandle_t cublas = nullptr;
  std::unique_ptr<diffrt::CudnnConv> conv_find, conv_heur;
  std::unique_ptr<diffrt::CublasLtContext> lt;
  diffrt::DeviceBuffer cublas_ws;
  std::vector<Result> results;
  const Case* current = nullptr;
  double copy_gbs = 0;
  std::map<std::string, double> gemm_tflops;  // dtype -> best TFLOP/s

  // Times fn and records one result row under the current case.
  void measure(const std::string& impl, double flops, double bytes, const std::function<void()>& fn,
               const std::string& note = "", bool ceiling = false) {
    Result r;
    r.op = current->op; r.name = current->name; r.dtype = current->dtype; r.impl = impl;
    r.flops = flops; r.bytes = bytes; r.note = note; r.ceiling = ceiling;
    try {
      r.st = timer->time(fn);
    } catch (const std::exception& e) {
      r.error = e.what();
      check_sticky();
    }
    results.push_back(r);
    print_row(results.back());
  }
  // Records an error for the whole case.
  void fail_case(const std::string& what) {
    Result r;
    r.op = current->op; r.name = current->name; r.dtype = current->dtype; r.impl = "-"; r.error = what;
    results.push_back(r);
    print_row(results.back());
  }
  // A sticky device error (illegal address, ...) makes every later call fail: stop the run.
  static void check_sticky() {
    (void)cudaGetLastError();
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) throw Fatal(std::string("fatal CUDA error: ") + cudaGetErrorName(e) + " " + cudaGetErrorString(e));
  }

  double roof_frac(const Result& r) const {
    if (r.st.median_us <= 0) return 0;
    double t = r.st.median_us * 1e-6, floor_s = 0;
    if (copy_gbs > 0 && r.bytes > 0) floor_s = std::max(floor_s, r.bytes / (copy_gbs * 1e9));
    auto it = gemm_tflops.find(r.dtype);
    if (it != gemm_tflops.end() && it->second > 0 && r.flops > 0) floor_s = std::max(floor_s, r.flops / (it->second * 1e12));
    return floor_s / t;
  }

  bool header_printed = false;
  void print_row(const Result& r) {
    if (!header_printed) {
      std::printf("| op | case | dtype | impl | median us | p90 us | p99 us | GB/s | TFLOP/s | roof%% | reps | note |\n");
      std::printf("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
      header_printed = true;
    }
    if (!r.error.empty()) {
      std::printf("| %s | %s | %s | %s | ERROR | | | | | | | %s |\n", r.op.c_str(), r.name.c_str(), r.dtype.c_str(),
                  r.impl.c_str(), r.error.substr(0, 160).c_str());
      std::fflush(stdout);
      return;
    }
    double t = r.st.median_us * 1e-6;
    char gbs[32] = "", tfs[32] = "", roof[32] = "";
    if (r.bytes > 0 && t > 0) std::snprintf(gbs, sizeof gbs, "%.0f", r.bytes / t / 1e9);
    if (r.flops > 0 && t > 0) std::snprintf(tfs, sizeof tfs, "%.1f", r.flops / t / 1e12);
    if (!r.ceiling) std::snprintf(roof, sizeof roof, "%.0f", 100 * roof_frac(r));
    std::printf("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %d | %s |\n", r.op.c_str(), r.name.c_str(),
                r.dtype.c_str(), r.impl.c_str(), r.st.median_us, r.st.p90_us, r.st.p99_us, gbs, tfs, roof, r.st.reps,
                r.note.c_str());
    std::fflush(stdout);
  }
};

std::vector<DType> dtypes_for(const Options& o, std::vector<DType> full) {
  if (o.quick) return {DType::F16};
  return full;
}
const std::vector<DType> kHalfAndFloat = {DType::F16, DType::BF16, DType::F32};
const std::vector<DType> kHalves = {DType::F16, DType::BF16};

// ================================ ceilings ========================================================

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

// ================================ group norm ======================================================

void add_group_norm_cases(std::vector<Case>& cases, const Options& o) {
  struct S { int h, w, c; };
  const S shapes[] = {{32, 32, 128}, {16, 16, 256}, {64, 64, 320}, {9, 9, 1280}};
  std::vector<int> ns = o.quick ? std::vector<int>{1, 8} : std::vector<int>{1, 8, 64};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const S& s : shapes)
      for (int n : ns) {
        std::string name = std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) + "_N" + std::to_string(n);
        cases.push_back({"group_norm", name, diffrt::dtype_name(t), [=](Ctx& c) {
          const int hw = s.h * s.w, groups = 32;
          const size_t count = size_t(n) * hw * s.c;
          bench::DevArray x(count, t, 21), y(count, t, 22), gamma(s.c, t, 23, 0.5f, 1.5f), beta(s.c, t, 24);
          diffrt::GroupNormParams p;
          p.x = x.get(); p.y = y.get(); p.gamma = gamma.get(); p.beta = beta.get();
          p.n = n; p.hw = hw; p.c = s.c; p.groups = groups; p.eps = 1e-6f; p.silu = true; p.dtype = t;
          diffrt::DeviceBuffer ws(diffrt::group_norm_workspace_bytes(p));
          p.workspace = ws.get(); p.workspace_bytes = ws.bytes();
          const double bytes = 2.0 * count * diffrt::dtype_size(t) + 2.0 * s.c * diffrt::dtype_size(t);
          c.measure("diffrt", 0, bytes, [&] { diffrt::group_norm_cuda(p, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); });
          diffrt::DeviceBuffer stats(size_t(n) * groups * 2 * sizeof(float));
          float* mean = stats.as<float>();
          float* rstd = mean + size_t(n) * groups;
          auto naive = [&](auto tag) {
            using T = decltype(tag);
            const T* xp = x.as<T>();
            gn_naive_mean<T><<<n * groups, 256, 0, c.stream>>>(xp, mean, hw, s.c, groups);
            gn_naive_var<T><<<n * groups, 256, 0, c.stream>>>(xp, mean, rstd, hw, s.c, groups, 1e-6f);
            gn_naive_apply<T><<<ew_blocks(count), 256, 0, c.stream>>>(xp, y.as<T>(), gamma.as<T>(), beta.as<T>(), mean, rstd,
                                                                       count, hw, s.c, groups);
            DIFFRT_CUDA_CHECK_LAUNCH();
          };
          c.measure("naive", 0, bytes, [&] {
            if (t == DType::F32) naive(float{});
            else if (t == DType::F16) naive(__half{});
            else naive(__nv_bfloat16{});
          }, "3 kernels: mean, var, apply");
        }});
      }
}

// ================================ layer norm / GEGLU (SD transformer blocks) =======================

// SD 1.x UNet2DConditionModel at 512x512 with CFG (batch 2): tokens per level 64x64, 32x32, 16x16, 8x8 at
// C = 320, 640, 1280, 1280 (LayerNorm) and GEGLU width F = 4C; plus CLIP text encoders (77 tokens, C = 768
// for SD 1.x, 1024 for SD 2.x).
struct TokenShape { const char* name; long long rows; int c; };
const TokenShape kSdTokens[] = {{"T4096x320_B2", 2 * 4096, 320}, {"T1024x640_B2", 2 * 1024, 640},
                                {"T256x1280_B2", 2 * 256, 1280},  {"T64x1280_B2", 2 * 64, 1280}};

template <class F>
void dispatch_dtype(DType t, F&& f) {
  if (t == DType::F32) f(float{});
  else if (t == DType::F16) f(__half{});
  else f(__nv_bfloat16{});
}

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

// ================================ attention =======================================================

void add_attention_cases(std::vector<Case>& cases, const Options& o) {
  struct A {
    std::string name; std::vector<int> batches; int heads, lq, lkv, d; std::vector<DType> dts;
    bool causal = false;
  };
  std::vector<A> as = {
      {"sd64_selfattn_T4096_d40_h8", {2}, 8, 4096, 4096, 40, kHalves},
      {"T4096_d64_h8", {2}, 8, 4096, 4096, 64, kHalves},
      {"sd32_selfattn_T1024_d80_h8", {2}, 8, 1024, 1024, 80, kHalves},
      {"sd16_selfattn_T256_d160_h8", {2}, 8, 256, 256, 160, kHalves},
      {"sd64_crossattn_Lq4096_Lkv77_d40_h8", {2}, 8, 4096, 77, 40, kHalves},
      {"sd16_crossattn_Lq256_Lkv77_d160_h8", {2}, 8, 256, 77, 160, kHalves},
      {"ddpm_cifar_T256_d256_h1", o.quick ? std::vector<int>{1, 256} : std::vector<int>{1, 64, 256}, 1, 256, 256, 256, kHalfAndFloat},
      {"ddpm_cifar_mid_T16_d256_h1", {1, 256}, 1, 16, 16, 256, kHalfAndFloat},
      {"ddpm_celebahq_T256_d512_h1", {1, 16}, 1, 256, 256, 512, kHalfAndFloat},
      {"clip_causal_T77_d64_h12", {2}, 12, 77, 77, 64, kHalfAndFloat, true},  // SD 1.x text encoder, CFG
      {"clip_causal_T77_d64_h16", {2}, 16, 77, 77, 64, kHalves, true},        // SD 2.x (OpenCLIP-H)
      // DiT-XL/2: 16 heads of 72 (the 80 bucket), batch 1 with CFG (2) and batch 32 with CFG (64).
      {"dit256_selfattn_T256_d72_h16", {2, 64}, 16, 256, 256, 72, kHalfAndFloat},
      {"dit512_selfattn_T1024_d72_h16", {2, 64}, 16, 1024, 1024, 72, kHalves},
  };
  for (const A& a : as)
    for (DType t : dtypes_for(o, a.dts))
      for (int b : a.batches) {
        cases.push_back({"attention", a.name + "_B" + std::to_string(b), diffrt::dtype_name(t), [=](Ctx& c) {
          const int hd = a.heads * a.d;
          const size_t nq = size_t(b) * a.lq * hd, nkv = size_t(b) * a.lkv * hd;
          bench::DevArray q(nq, t, 31), k(nkv, t, 32), v(nkv, t, 33), out(nq, t, 34);
          diffrt::AttentionParams p;
          p.q = q.get(); p.k = k.get(); p.v = v.get(); p.o = out.get();
          p.batch = b; p.heads = a.heads; p.lq = a.lq; p.lkv = a.lkv; p.head_dim = a.d;
          p.ldq = p.ldk = p.ldv = p.ldo = hd;
          p.scale = 1.0f / std::sqrt(float(a.d));
          p.causal = a.causal;
          p.dtype = t;
          const size_t es = diffrt::dtype_size(t);
          const double visible = a.causal ? (a.lq + 1.0) / (2.0 * a.lq) : 1.0;
          const double flops = 4.0 * b * a.heads * double(a.lq) * a.lkv * a.d * visible;
          const double bytes = double(2 * nq + 2 * nkv) * es;
          const diffrt::AttentionLaunch al = diffrt::attention_cuda_launch(p);
          const std::string path = std::string(al.tensor_cores ? "mma" : "simt") + " d" + std::to_string(al.head_dim_bucket);
          c.measure("diffrt", flops, bytes, [&] { diffrt::attention_cuda(p, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); },
                    a.causal ? "causal, " + path : path);
          if (a.causal) return;  // the naive softmax below has no mask

          // Naive: batched GEMMs through cuBLAS over (b, h) pointer arrays, S materialised in dtype t.
          const int bh = b * a.heads;
          const size_t ns = size_t(bh) * a.lq * a.lkv;
          bench::DevArray sbuf(ns, t, 35);
          std::vector<const void*> hq(bh), hk(bh), hv(bh);
          std::vector<void*> hs(bh), ho(bh);
          for (int i = 0; i < b; ++i)
            for (int h = 0; h < a.heads; ++h) {
              int j = i * a.heads + h;
              hq[j] = static_cast<const char*>(q.get()) + (size_t(i) * a.lq * hd + size_t(h) * a.d) * es;
              hk[j] = static_cast<const char*>(k.get()) + (size_t(i) * a.lkv * hd + size_t(h) * a.d) * es;
              hv[j] = static_cast<const char*>(v.get()) + (size_t(i) * a.lkv * hd + size_t(h) * a.d) * es;
              ho[j] = static_cast<char*>(out.get()) + (size_t(i) * a.lq * hd + size_t(h) * a.d) * es;
              hs[j] = static_cast<char*>(sbuf.get()) + size_t(j) * a.lq * a.lkv * es;
            }
          diffrt::DeviceBuffer ptrs(5 * size_t(bh) * sizeof(void*));
          void** dp = ptrs.as<void*>();
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 0 * bh, hq.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 1 * bh, hk.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 2 * bh, hv.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 3 * bh, hs.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 4 * bh, ho.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          const cudaDataType_t ct = cuda_type(t);
          const float one = 1.f, zero = 0.f;
          c.measure("naive_cublas", flops, bytes, [&] {
            // Row-major S[Lq, Lkv] = Q K^T is column-major S^T = K Q^T: op(A)=T on K (d x Lkv, ld hd).
            DIFFRT_CUDA_CHECK(cublasGemmBatchedEx(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, a.lkv, a.lq, a.d, &one,
                                                  (const void* const*)(dp + 1 * bh), ct, hd,
                                                  (const void* const*)(dp + 0 * bh), ct, hd, &zero,
                                                  (void* const*)(dp + 3 * bh), ct, a.lkv, bh, CUBLAS_COMPUTE_32F,
                                                  CUBLAS_GEMM_DEFAULT));
            unsigned rows = unsigned(size_t(bh) * a.lq);
            int threads = a.lkv >= 1024 ? 512 : (a.lkv >= 256 ? 256 : 128);
            if (t == DType::F32) softmax_rows<float><<<rows, threads, 0, c.stream>>>(sbuf.as<float>(), a.lkv, p.scale);
            else if (t == DType::F16) softmax_rows<__half><<<rows, threads, 0, c.stream>>>(sbuf.as<__half>(), a.lkv, p.scale);
            else softmax_rows<__nv_bfloat16><<<rows, threads, 0, c.stream>>>(sbuf.as<__nv_bfloat16>(), a.lkv, p.scale);
            DIFFRT_CUDA_CHECK_LAUNCH();
            // Row-major O[Lq, d] = P V is column-major O^T = V^T P^T: A = V (d x Lkv, ld hd), B = P (Lkv x Lq).
            DIFFRT_CUDA_CHECK(cublasGemmBatchedEx(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, a.d, a.lq, a.lkv, &one,
                                                  (const void* const*)(dp + 2 * bh), ct, hd,
                                                  (const void* const*)(dp + 3 * bh), ct, a.lkv, &zero,
                                                  (void* const*)(dp + 4 * bh), ct, hd, bh, CUBLAS_COMPUTE_32F,
                                                  CUBLAS_GEMM_DEFAULT));
          }, "GEMM + softmax + GEMM, S in " + std::string(diffrt::dtype_name(t)));
        }});
      }
}

// ================================ CLIP text encoder: activation, embedding ========================

void add_clip_cases(std::vector<Case>& cases, const Options& o) {
  struct Act { const char* name; long long rows; int f; diffrt::ActivationKind kind; };
  const Act acts[] = {{"clip_mlp_T77x3072_B2_quick_gelu", 2 * 77, 3072, diffrt::ActivationKind::QuickGelu},
                      {"clip_mlp_T77x4096_B2_gelu", 2 * 77, 4096, diffrt::ActivationKind::Gelu}};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const Act& a : acts)
      cases.push_back({"activation", a.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const size_t count = size_t(a.rows) * a.f;
        bench::DevArray x(count, t, 91, -4.f, 4.f), y(count, t, 92);
        diffrt::ActivationParams p;
        p.x = x.get(); p.y = y.get(); p.count = (long long)count; p.kind = a.kind; p.dtype = t;
        c.measure("diffrt", 0, 2.0 * count * diffrt::dtype_size(t), [&] { diffrt::activation_cuda(p, c.stream); });
      }});
  struct Emb { const char* name; int batch, c; };
  const Emb embs[] = {{"clip_T77x768_B2_V49408", 2, 768}, {"clip_T77x1024_B2_V49408", 2, 1024}};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const Emb& e : embs)
      cases.push_back({"embedding", e.name, diffrt::dtype_name(t), [=](Ctx& c) {
        const int vocab = 49408, l = 77;
        bench::DevArray tok(size_t(vocab) * e.c, t, 93), pos(size_t(l) * e.c, t, 94), y(size_t(e.batch) * l * e.c, t, 95);
        std::vector<int32_t> ids(size_t(e.batch) * l);
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919 + 49406) % vocab);
        diffrt::DeviceBuffer dids(ids.size() * sizeof(int32_t));
        DIFFRT_CUDA_CHECK(cudaMemcpy(dids.get(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
        diffrt::EmbeddingParams p;
        p.ids = static_cast<const int32_t*>(dids.get()); p.token_table = tok.get(); p.pos_table = pos.get(); p.y = y.get();
        p.n = e.batch; p.l = l; p.c = e.c; p.vocab = vocab; p.max_positions = l; p.dtype = t;
        const double bytes = (2.0 * e.batch * l * e.c + double(l) * e.c) * diffrt::dtype_size(t) + 4.0 * e.batch * l;
        c.measure("diffrt", 0, bytes, [&] { diffrt::embedding_cuda(p, c.stream); });
      }});
}

// ================================ convolution =====================================================

void add_conv_cases(std::vector<Case>& cases, const Options& o) {
  struct C { std::string name; int h, w, cin, cout, k, stride, pt, pl, pb, pr; std::vector<int> batches; };
  const std::vector<int> cifar_b = {1, 256}, celeb_b = {1, 16}, sd_b = {2};
  const std::vector<C> cs = {
      {"cifar_conv_in_32x32_3to128", 32, 32, 3, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_32x32_128to128", 32, 32, 128, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_down_32x32_128_s2", 32, 32, 128, 128, 3, 2, 0, 0, 1, 1, cifar_b},
      {"cifar_res_16x16_128to256", 16, 16, 128, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_16x16_256to256", 16, 16, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_8x8_256to256", 8, 8, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_res_4x4_256to256", 4, 4, 256, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_upres_16x16_512to256", 16, 16, 512, 256, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_upres_32x32_384to128", 32, 32, 384, 128, 3, 1, 1, 1, 1, 1, cifar_b},
      {"cifar_shortcut1x1_32x32_384to128", 32, 32, 384, 128, 1, 1, 0, 0, 0, 0, cifar_b},
      {"cifar_conv_out_32x32_128to3", 32, 32, 128, 3, 3, 1, 1, 1, 1, 1, cifar_b},
      {"celebahq_res_256x256_128to128", 256, 256, 128, 128, 3, 1, 1, 1, 1, 1, celeb_b},
      {"celebahq_res_16x16_512to512", 16, 16, 512, 512, 3, 1, 1, 1, 1, 1, celeb_b},
      {"celebahq_res_8x8_512to512", 8, 8, 512, 512, 3, 1, 1, 1, 1, 1, celeb_b},
      {"sd_res_64x64_320to320", 64, 64, 320, 320, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_32x32_640to640", 32, 32, 640, 640, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_16x16_1280to1280", 16, 16, 1280, 1280, 3, 1, 1, 1, 1, 1, sd_b},
      {"sd_res_8x8_1280to1280", 8, 8, 1280, 1280, 3, 1, 1, 1, 1, 1, sd_b},
  };
  const bool quick = o.quick;
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const C& cc : cs)
      for (int n : cc.batches) {
        cases.push_back({"conv", cc.name + "_N" + std::to_string(n), diffrt::dtype_name(t), [=](Ctx& c) {
          const int ho = diffrt::conv_out_dim(cc.h, cc.k, cc.stride, cc.pt, cc.pb);
          const int wo = diffrt::conv_out_dim(cc.w, cc.k, cc.stride, cc.pl, cc.pr);
          const size_t nx = size_t(n) * cc.h * cc.w * cc.cin, nw = size_t(cc.cout) * cc.k * cc.k * cc.cin;
          const size_t ny = size_t(n) * ho * wo * cc.cout;
          const float wscale = 1.0f / std::sqrt(float(cc.k * cc.k * cc.cin));
          bench::DevArray x(nx, t, 41), w(nw, t, 42, -wscale, wscale), bias(cc.cout, t, 43), y(ny, t, 44);
          diffrt::Conv2dParams p;
          p.x = x.get(); p.w = w.get(); p.bias = bias.get(); p.y = y.get();
          p.n = n; p.h = cc.h; p.w_in = cc.w; p.cin = cc.cin; p.cout = cc.cout; p.kh = p.kw = cc.k; p.stride = cc.stride;
          p.pad_top = cc.pt; p.pad_left = cc.pl; p.pad_bottom = cc.pb; p.pad_right = cc.pr; p.dtype = t;
          const double flops = 2.0 * n * ho * wo * double(cc.cout) * cc.k * cc.k * cc.cin;
          const double bytes = double(nx + nw + ny + cc.cout) * diffrt::dtype_size(t);
          c.measure("diffrt_cudnn", flops, bytes, [&] { c.conv_find->forward(p, c.stream); }, "CudnnConv, Find");
          if (!quick) c.measure("cudnn_heuristic", flops, bytes, [&] { c.conv_heur->forward(p, c.stream); }, "CudnnConv, heuristic");
        }});
      }
}

// ================================ linear ==========================================================

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

// ================================ DiT: adaLN, gated linear, patch embedding ======================
#include "bench/dit_cases.cuh"

// ================================ scheduler step ==================================================

void add_scheduler_cases(std::vector<Case>& cases, const Options& o) {
  struct S { std::string name; int b, c, h, w; bool cfg; };
  std::vector<S> ss = {
      {"cifar_3x32x32_B1", 1, 3, 32, 32, false},      {"cifar_3x32x32_B64", 64, 3, 32, 32, false},
      {"cifar_3x32x32_B256", 256, 3, 32, 32, false},  {"celebahq_3x256x256_B1", 1, 3, 256, 256, false},
      {"celebahq_3x256x256_B16", 16, 3, 256, 256, false}, {"sd_latent_4x64x64_B1_cfg", 1, 4, 64, 64, true},
      {"sd_latent_4x64x64_B8_cfg", 8, 4, 64, 64, true},
  };
  for (const char* kind : {"ddim", "ddpm"})
    for (DType t : dtypes_for(o, {DType::F32, DType::F16}))
      for (const S& s : ss) {
        cases.push_back({"sched", std::string(kind) + "_" + s.name, diffrt::dtype_name(t), [=](Ctx& c) {
          const bool ddim = std::string(kind) == "ddim";
          const int bm = s.cfg ? 2 * s.b : s.b;
          const size_t per = size_t(s.c) * s.h * s.w, nx = size_t(s.b) * per, nm = size_t(bm) * per;
          bench::DevArray model_out(nm, t, 61), x(nx, DType::F32, 62), model_in(nm, t, 63), noise(nx, DType::F32, 64);
          diffrt::SchedulerStepDeviceParams dp;
          diffrt::SchedulerStepParams& p = dp.base;
          p.x = x.as<float>(); p.b = s.b; p.h = s.h; p.w = s.w; p.c = s.c; p.cm = s.c;
          p.cfg = s.cfg; p.guidance_scale = 7.5f;
          p.kind = ddim ? diffrt::SamplerKind::Ddim : diffrt::SamplerKind::Ddpm;
          p.prediction = diffrt::PredictionType::Epsilon;
          p.variance = diffrt::VarianceType::FixedLarge;
          p.clip_sample = true;
          auto& k = p.k;
          k.timestep = 500; k.prev_timestep = ddim ? 480 : 499;
          k.alpha_prod_t = 0.25f; k.alpha_prod_prev = 0.27f; k.beta_prod_t = 0.75f; k.beta_prod_prev = 0.73f;
          k.sqrt_alpha_prod_t = 0.5f; k.sqrt_beta_prod_t = 0.8660254f;
          k.current_alpha_t = 0.99f; k.current_beta_t = 0.01f; k.x0_coeff = 0.02f; k.xt_coeff = 0.97f; k.noise_std = 0.1f;
          k.sqrt_alpha_prod_prev = 0.5196f; k.std_dev_t = 0.f; k.dir_coeff = 0.8544f;
          k.add_noise = !ddim;
          p.noise_source = ddim ? diffrt::NoiseSource::None : diffrt::NoiseSource::Philox;
          p.seed = 1234;
          dp.model_dtype = t; dp.model_out = model_out.get(); dp.model_in = model_in.get();
          const size_t sm = diffrt::dtype_size(t);
          const double bytes = double(nm) * sm * 2 + double(nx) * 4 * 2;
          c.measure("diffrt", 0, bytes, [&] { diffrt::scheduler_step_cuda_ex(dp, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); },
                    ddim ? "DDIM eta=0 eps clip, writes next input" : "DDPM fixed_large, Philox noise, writes next input");

          // Eager chain: one launch per torch op, fp32 temporaries.
          diffrt::DeviceBuffer tmp(5 * nm * sizeof(float) + nx * sizeof(float));
          float* mo = tmp.as<float>();  // model_out as fp32 [Bm]
          float* eps = mo + nm;         // [B]
          float* t1 = eps + nm;
          float* t2 = t1 + nm;
          float* x0 = t2 + nm;
          float* xf = x.as<float>();
          const float* nz = noise.as<float>();
          const unsigned gb = ew_blocks(nm);
          c.measure("eager", 0, bytes, [&] {
            cudaStream_t st = c.stream;
            const float* e = mo;
            if (t == DType::F16) ew_cast<__half, float><<<gb, 256, 0, st>>>(mo, model_out.as<__half>(), nm);
            else ew_cast<float, float><<<gb, 256, 0, st>>>(mo, model_out.as<float>(), nm);
            if (s.cfg) {  // eps = u + s (c - u)
              ew_axpy<<<gb, 256, 0, st>>>(t1, mo + nx, -1.f, mo, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, t1, 7.5f, nx);
              ew_axpy<<<gb, 256, 0, st>>>(eps, mo, 1.f, t2, nx);
              e = eps;
            }
            ew_scale<<<gb, 256, 0, st>>>(t1, e, k.sqrt_beta_prod_t, nx);  // x0 = (x - sqrt_b eps) / sqrt_a
            ew_axpy<<<gb, 256, 0, st>>>(t2, xf, -1.f, t1, nx);
            ew_scale<<<gb, 256, 0, st>>>(x0, t2, 1.f / k.sqrt_alpha_prod_t, nx);
            ew_clamp<<<gb, 256, 0, st>>>(x0, x0, -1.f, 1.f, nx);
            if (ddim) {  // x = sqrt_a_prev x0 + dir eps
              ew_scale<<<gb, 256, 0, st>>>(t1, x0, k.sqrt_alpha_prod_prev, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, e, k.dir_coeff, nx);
              ew_axpy<<<gb, 256, 0, st>>>(xf, t1, 1.f, t2, nx);
            } else {  // x = c0 x0 + ct x + std z
              ew_scale<<<gb, 256, 0, st>>>(t1, x0, k.x0_coeff, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, xf, k.xt_coeff, nx);
              ew_axpy<<<gb, 256, 0, st>>>(t1, t1, 1.f, t2, nx);
              ew_scale<<<gb, 256, 0, st>>>(t2, nz, k.noise_std, nx);
              ew_axpy<<<gb, 256, 0, st>>>(xf, t1, 1.f, t2, nx);
            }
            // Next model input (both CFG halves) in the model dtype.
            for (int h = 0; h < (s.cfg ? 2 : 1); ++h) {
              if (t == DType::F16) ew_cast<float, __half><<<gb, 256, 0, st>>>(model_in.as<__half>() + h * nx, xf, nx);
              else ew_cast<float, float><<<gb, 256, 0, st>>>(model_in.as<float>() + h * nx, xf, nx);
            }
            DIFFRT_CUDA_CHECK_LAUNCH();
          }, ddim ? "torch-op chain, DDIM" : "torch-op chain, DDPM (noise from a buffer)");
        }});
      }
}

// ================================ main ============================================================

void usage() {
  std::fprintf(stderr,
               "usage: diffrt_kernel_bench [--filter REGEX] [--reps N] [--quick] [--hot] [--json PATH]\n"
               "                           [--budget-s S] [--list] [--no-ceilings]\n");
}

json result_json(const Ctx& c, const Result& r) {
  json j = {{"op", r.op}, {"case", r.name}, {"dtype", r.dtype}, {"impl", r.impl}, {"flops", r.flops}, {"bytes", r.bytes},
            {"ceiling", r.ceiling}, {"note", r.note}};
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  double t = r.st.median_us * 1e-6;
  j["median_us"] = r.st.median_us; j["p90_us"] = r.st.p90_us; j["p99_us"] = r.st.p99_us;
  j["min_us"] = r.st.min_us; j["mean_us"] = r.st.mean_us; j["reps"] = r.st.reps;
  j["gbps"] = (r.bytes > 0 && t > 0) ? r.bytes / t / 1e9 : 0.0;
  j["tflops"] = (r.flops > 0 && t > 0) ? r.flops / t / 1e12 : 0.0;
  if (!r.ceiling) j["roof_frac"] = c.roof_frac(r);
  return j;
}

// Writes the JSON file (when --json): after every case (so a killed run keeps what it measured) and at
// the end (final = true prints where it went). Returns the number of failed rows.
int write_json(const Options& opt, const json& env, const Ctx& ctx, int skipped, const std::string& aborted,
               std::chrono::steady_clock::time_point t_start, bool final) {
  int n_err = 0;
  json jr = json::array();
  for (const Result& r : ctx.results) {
    jr.push_back(result_json(ctx, r));
    n_err += !r.error.empty();
  }
  if (opt.json_path.empty()) return n_err;
  json out = {{"schema", "diffrt.kernel_bench.v1"},
              {"env", env},
              {"options", {{"filter", opt.filter}, {"reps", opt.reps}, {"quick", opt.quick}, {"l2", opt.hot ? "hot" : "flushed"},
                           {"budget_s", opt.budget_s}}},
              {"ceilings", {{"copy_gbps", ctx.copy_gbs}, {"gemm_tflops", ctx.gemm_tflops}}},
              {"results", jr},
              {"errors", n_err},
              {"complete", final && aborted.empty()},
              {"skipped_over_budget", skipped},
              {"wall_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()}};
  if (!aborted.empty()) out["aborted"] = aborted;
  const std::string tmp = opt.json_path + ".tmp";
  {
    std::ofstream f(tmp);
    f << out.dump(1) << "\n";
    if (!f) {
      std::fprintf(stderr, "diffrt_kernel_bench: could not write %s\n", tmp.c_str());
      return n_err;
    }
  }
  if (std::rename(tmp.c_str(), opt.json_path.c_str()) != 0)
    std::fprintf(stderr, "diffrt_kernel_bench: could not rename %s\n", tmp.c_str());
  else if (final)
    std::fprintf(stderr, "diffrt_kernel_bench: wrote %s\n", opt.json_path.c_str());
  return n_err;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 0; i < argc; ++i) opt.command_line += (i ? " " : "") + std::string(argv[i]);
  if (const char* e = std::getenv("DIFFRT_BENCH_JSON")) opt.json_path = e;  // defaults from the environment
  if (const char* e = std::getenv("DIFFRT_BENCH_BUDGET_S")) opt.budget_s = std::atof(e);
  if (const char* e = std::getenv("DIFFRT_BENCH_QUICK")) opt.quick = std::string(e) == "1";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { usage(); std::exit(4); }
      return argv[++i];
    };
    try {
      if (a == "--filter") opt.filter = next();
      else if (a == "--reps") opt.reps = std::max(1, std::stoi(next()));
      else if (a == "--quick") opt.quick = true;
      else if (a == "--hot") opt.hot = true;
      else if (a == "--json") opt.json_path = next();
      else if (a == "--budget-s") opt.budget_s = std::stod(next());
      else if (a == "--list") opt.list = true;
      else if (a == "--no-ceilings") opt.ceilings = false;
      else if (a == "--help" || a == "-h") { usage(); return 0; }
      else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); usage(); return 4; }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bad value for %s\n", a.c_str());
      return 4;
    }
  }
  if (opt.quick) opt.reps = std::min(opt.reps, 30);
  std::regex filter_re;
  try {
    filter_re = std::regex(opt.filter.empty() ? std::string(".*") : opt.filter);
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "bad --filter regex: %s\n", e.what());
    return 4;
  }

  std::vector<Case> ceilings, cases;
  add_ceiling_cases(ceilings, opt);
  add_group_norm_cases(cases, opt);
  add_layer_norm_cases(cases, opt);
  add_geglu_cases(cases, opt);
  add_attention_cases(cases, opt);
  add_clip_cases(cases, opt);
  add_conv_cases(cases, opt);
  add_linear_cases(cases, opt);
  add_scheduler_cases(cases, opt);
  add_dit_cases(cases, opt);
  std::vector<const Case*> selected;
  for (const Case& c : cases)
    if (std::regex_search(c.id(), filter_re)) selected.push_back(&c);
  if (opt.list) {
    if (opt.ceilings) for (const Case& c : ceilings) std::printf("%s\n", c.id().c_str());
    for (const Case* c : selected) std::printf("%s\n", c->id().c_str());
    return 0;
  }

  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    (void)cudaGetLastError();
    std::fprintf(stderr, "diffrt_kernel_bench: no CUDA device\n");
    if (!opt.json_path.empty()) {  // a record that the run happened and why it produced nothing
      std::ofstream f(opt.json_path);
      f << json{{"schema", "diffrt.kernel_bench.v1"}, {"env", {{"date_utc", bench::utc_now_iso()}, {"command", opt.command_line}}},
                {"results", json::array()}, {"aborted", "no CUDA device"}}.dump(1) << "\n";
    }
    return 3;
  }

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  json env;
  std::string aborted;
  Ctx ctx;
  ctx.opt = opt;
  const auto t_start = std::chrono::steady_clock::now();
  int skipped = 0;
  try {
    int dev = 0;
    DIFFRT_CUDA_CHECK(cudaSetDevice(dev));
    cudaDeviceProp prop{};
    DIFFRT_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    int rt = 0, drv = 0, clk = 0, mclk = 0, bus = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
    cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev);
    (void)cudaGetLastError();
    bench::NvmlInfo nv = bench::query_nvml(dev);
    env = {{"gpu", prop.name}, {"cc", std::to_string(prop.major) + "." + std::to_string(prop.minor)},
           {"sm_count", prop.multiProcessorCount}, {"l2_bytes", prop.l2CacheSize},
           {"global_mem_bytes", prop.totalGlobalMem}, {"mem_bus_bits", bus},
           {"cuda_runtime", rt}, {"cuda_driver_api", drv}, {"driver", nv.driver_version},
           {"cudnn", cudnnGetVersion()}, {"cublaslt", cublasLtGetVersion()},
           {"max_sm_clock_mhz_attr", clk / 1000}, {"max_mem_clock_mhz_attr", mclk / 1000},
           {"nvml", nv.ok}, {"sm_clock_mhz_start", nv.sm_clock_mhz}, {"mem_clock_mhz_start", nv.mem_clock_mhz},
           {"max_sm_clock_mhz", nv.max_sm_clock_mhz}, {"max_mem_clock_mhz", nv.max_mem_clock_mhz},
           {"power_limit_w", nv.power_limit_mw / 1000.0}, {"temperature_c_start", nv.temperature_c},
           {"date_utc", bench::utc_now_iso()}, {"command", opt.command_line}, {"git_sha", DIFFRT_BENCH_GIT_SHA}};
    if (const char* sha = std::getenv("DIFFRT_GIT_SHA")) env["git_sha"] = sha;
    std::printf("# diffrt_kernel_bench: %s (sm_%d%d, %d SMs, L2 %d MB), driver %s, CUDA runtime %d, cuDNN %zu, %s\n\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20,
                nv.driver_version.c_str(), rt, cudnnGetVersion(), opt.hot ? "L2 hot" : "L2 flushed before each rep");

    DIFFRT_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    bench::TimerConfig tc;
    tc.reps = opt.reps;
    tc.min_reps = std::min(opt.reps, 10);
    tc.flush_l2 = !opt.hot;
    tc.case_budget_s = opt.quick ? 0.1 : 0.4;
    ctx.timer = std::make_unique<bench::Timer>(ctx.stream, tc);
    DIFFRT_CUDA_CHECK(cublasCreate(&ctx.cublas));
    DIFFRT_CUDA_CHECK(cublasSetStream(ctx.cublas, ctx.stream));
    DIFFRT_CUDA_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_DEFAULT_MATH));
    ctx.cublas_ws.allocate(size_t(32) << 20);
    DIFFRT_CUDA_CHECK(cublasSetWorkspace(ctx.cublas, ctx.cublas_ws.get(), ctx.cublas_ws.bytes()));
    diffrt::CudnnConv::Options find_opt, heur_opt;
    heur_opt.exhaustive_search = false;
    ctx.conv_find = std::make_unique<diffrt::CudnnConv>(find_opt);
    ctx.conv_heur = std::make_unique<diffrt::CudnnConv>(heur_opt);
    ctx.lt = std::make_unique<diffrt::CublasLtContext>();

    auto run_case = [&](const Case& c) {
      if (g_stop) throw std::runtime_error("stopped by a signal (SIGTERM/SIGINT): remaining cases not run");
      if (opt.budget_s > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() > opt.budget_s) {
        ++skipped;
        return;
      }
      ctx.current = &c;
      try {
        c.body(ctx);
      } catch (const Fatal&) {
        throw;
      } catch (const std::exception& e) {  // allocation failure or setup error: this case only
        ctx.fail_case(e.what());
        Ctx::check_sticky();
      }
      write_json(opt, env, ctx, skipped, "running", t_start, false);
    };
    if (opt.ceilings) {
      for (const Case& c : ceilings) run_case(c);
      for (const Result& r : ctx.results) {
        if (!r.ceiling || !r.error.empty() || r.st.median_us <= 0) continue;
        double t = r.st.median_us * 1e-6;
        if (r.flops == 0) ctx.copy_gbs = std::max(ctx.copy_gbs, r.bytes / t / 1e9);
        else if (r.dtype != "tf32") ctx.gemm_tflops[r.dtype] = std::max(ctx.gemm_tflops[r.dtype], r.flops / t / 1e12);
      }
      std::printf("\nceilings: copy %.0f GB/s; GEMM fp16 %.0f, bf16 %.0f, fp32 %.1f TFLOP/s\n\n", ctx.copy_gbs,
                  ctx.gemm_tflops["fp16"], ctx.gemm_tflops["bf16"], ctx.gemm_tflops["fp32"]);
      ctx.header_printed = false;
    }
    for (const Case* c : selected) run_case(*c);
  } catch (const std::exception& e) {
    aborted = e.what();
    std::fprintf(stderr, "diffrt_kernel_bench: aborted: %s\n", aborted.c_str());
  }
  if (skipped) std::printf("\n%d cases skipped: over --budget-s %.0f\n", skipped, opt.budget_s);
  if (!env.is_null()) {
    bench::NvmlInfo nv_end = bench::query_nvml(0);
    env["sm_clock_mhz_end"] = nv_end.sm_clock_mhz;
    env["mem_clock_mhz_end"] = nv_end.mem_clock_mhz;
    env["temperature_c_end"] = nv_end.temperature_c;
  }
  int n_err = write_json(opt, env, ctx, skipped, aborted, t_start, true);
  if (ctx.cublas) cublasDestroy(ctx.cublas);
  if (!aborted.empty()) return 2;
  return n_err ? 1 : 0;
}
