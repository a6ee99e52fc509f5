// The case harness of diffrt_kernel_bench: options, cases ("op/case/dtype"), result rows and the context a
// case body measures with (stream, timer, cuBLAS/cuDNN/cuBLASLt handles, the measured ceilings). Each
// *_bench.cu file registers the cases of one op through its add_*_cases function, declared at the end.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "bench/kernels/device_data.cuh"
#include "bench/kernels/timer.cuh"
#include "kernels/common/cuda_check.h"
#include "kernels/conv/conv_cuda.h"
#include "kernels/gemm/gemm_cuda.h"

namespace bench {

using diffrt::DType;

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
  Stats st;
  double flops = 0, bytes = 0;
  bool ceiling = false;
};

// A sticky CUDA error: the run cannot go on.
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
  std::unique_ptr<Timer> timer;
  cublasHandle_t cublas = nullptr;
  std::unique_ptr<diffrt::CudnnConv> conv_find, conv_heur;
  std::unique_ptr<diffrt::CublasLtContext> lt;
  diffrt::DeviceBuffer cublas_ws;
  std::vector<Result> results;
  const Case* current = nullptr;
  double copy_gbs = 0;
  std::map<std::string, double> gemm_tflops;  // dtype -> best TFLOP/s
  bool header_printed = false;

  // Times fn and records one result row under the current case.
  void measure(const std::string& impl, double flops, double bytes, const std::function<void()>& fn,
               const std::string& note = "", bool ceiling = false);
  // Records an error for the whole case.
  void fail_case(const std::string& what);
  // A sticky device error (illegal address, ...) makes every later call fail: stop the run.
  static void check_sticky();
  // max(B / COPY, F / GEMM[dtype]) / t_median: the fraction of the roofline floor reached.
  double roof_frac(const Result& r) const;
  // One markdown table row on stdout (the header before the first).
  void print_row(const Result& r);
};

// --quick runs fp16 only.
inline std::vector<DType> dtypes_for(const Options& o, std::vector<DType> full) {
  if (o.quick) return {DType::F16};
  return full;
}
inline const std::vector<DType> kHalfAndFloat = {DType::F16, DType::BF16, DType::F32};
inline const std::vector<DType> kHalves = {DType::F16, DType::BF16};

// Calls f with a value of the storage type of t (float, __half or __nv_bfloat16).
template <class F>
void dispatch_dtype(DType t, F&& f) {
  if (t == DType::F32) f(float{});
  else if (t == DType::F16) f(__half{});
  else f(__nv_bfloat16{});
}

// Grid of the grid-stride elementwise baselines: enough blocks to fill an H100 (132 SMs), no more.
inline unsigned ew_blocks(size_t n) { return unsigned(std::min<size_t>((n + 255) / 256, 132 * 16)); }

inline cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

// ---- registration, one function per file, called by main in this order (the order of --list and of the run)
void add_ceiling_cases(std::vector<Case>& cases, const Options& o);         // ceiling_bench.cu
void add_group_norm_cases(std::vector<Case>& cases, const Options& o);      // group_norm_bench.cu
void add_layer_norm_cases(std::vector<Case>& cases, const Options& o);      // layer_norm_bench.cu
void add_geglu_cases(std::vector<Case>& cases, const Options& o);           // geglu_bench.cu
void add_attention_cases(std::vector<Case>& cases, const Options& o);       // attention_bench.cu
void add_activation_cases(std::vector<Case>& cases, const Options& o);      // activation_bench.cu
void add_embedding_cases(std::vector<Case>& cases, const Options& o);       // embedding_bench.cu
void add_conv_cases(std::vector<Case>& cases, const Options& o);            // conv_bench.cu
void add_linear_cases(std::vector<Case>& cases, const Options& o);          // linear_bench.cu
void add_scheduler_step_cases(std::vector<Case>& cases, const Options& o);  // scheduler_step_bench.cu
void add_dit_cases(std::vector<Case>& cases, const Options& o);             // dit_bench.cu

}  // namespace bench
