// CUDA linear layer through cuBLASLt (see gemm_cublaslt.cu for the mapping and epilogues).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "kernels/common/cuda_check.h"
#include "kernels/gemm/gemm.h"

namespace diffrt {

// Owns the cuBLASLt handle, a fixed workspace, a scratch buffer for silu(x) and the per-shape plans
// (descriptors + the heuristic's algorithm). Not thread-safe: one context per thread/stream. Plans and
// scratch are created on the first call of each shape, so run every shape once before capturing a CUDA
// graph; a call under capture that would allocate throws instead.
class CublasLtContext {
 public:
  struct Options {
    bool allow_tf32 = false;                     // fp32 GEMMs may use TF32 tensor cores (10-bit mantissa)
    size_t workspace_bytes = size_t(32) << 20;   // cuBLASLt's recommendation for Hopper
  };
  CublasLtContext();
  explicit CublasLtContext(const Options& opt);
  ~CublasLtContext();
  CublasLtContext(const CublasLtContext&) = delete;
  CublasLtContext& operator=(const CublasLtContext&) = delete;

  const Options& options() const { return opt_; }
  struct Plan;  // defined in gemm_cublaslt.cu

 private:
  friend void linear_cuda(const LinearParams& p, CublasLtContext& ctx, cudaStream_t stream);
  Options opt_;
  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  DeviceBuffer silu_scratch_;
  // key: m, n, k, dtype, bias?, residual?, alpha/beta mode, min alignment of the pointers
  using Key = std::tuple<int, int, int, int, bool, bool, int, int>;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

// y = (act(x) w^T + bias + residual) * out_scale, see gemm.h.
void linear_cuda(const LinearParams& p, CublasLtContext& ctx, cudaStream_t stream);

}  // namespace diffrt
