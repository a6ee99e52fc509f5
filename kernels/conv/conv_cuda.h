// CUDA 2-D convolution through cuDNN (see conv_cudnn.cu for the mapping, padding and epilogue).
#pragma once
#include <cuda_runtime_api.h>

#include <array>
#include <map>
#include <memory>

#include "kernels/common/cuda_check.h"
#include "kernels/conv/conv.h"

namespace diffrt {

// Owns a cudnnHandle_t, a workspace, a scratch buffer for explicitly padded inputs (one batch chunk) and the
// per-shape plans (descriptors + chosen algorithm). Not thread-safe: one context per thread/stream. The first
// call of each shape selects the algorithm (cudnn...FindEx: runs candidates into the real output,
// synchronises the stream) and may grow buffers, so run every shape once before capturing a CUDA graph;
// under capture an unseen shape falls back to cuDNN's heuristic, and a buffer that would have to grow throws.
// y and residual must be the same buffer or disjoint.
class CudnnConv {
 public:
  struct Options {
    bool exhaustive_search = true;              // time candidates (Find) instead of the heuristic's pick
    bool allow_tf32 = false;                    // fp32 convs may use TF32 tensor cores
    size_t max_workspace_bytes = size_t(256) << 20;
    // Largest tensor of one cuDNN call, in elements (cuDNN's 32-bit descriptors); larger batches run in chunks
    // (conv_batch_chunks). Tests lower it to exercise the split at small sizes.
    int64_t max_tensor_elems = kCudnnMaxTensorElems;
  };
  CudnnConv();
  explicit CudnnConv(const Options& opt);
  ~CudnnConv();
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // y = (conv(x, w) + bias + residual) * out_scale; see conv.h for the contract.
  void forward(const Conv2dParams& p, cudaStream_t stream);

  const Options& options() const { return opt_; }
  // Device bytes held beyond the plans: the workspace (<= max_workspace_bytes) and the padding scratch (one batch
  // chunk of the largest asymmetrically padded input). runtime/cuda_plan.cpp counts both.
  size_t scratch_bytes() const { return workspace_.bytes() + padded_.bytes(); }
  struct Plan;  // defined in conv_cudnn.cu

 private:
  Plan& plan_for(const Conv2dParams& p, cudaStream_t stream);
  void run_chunk(const Conv2dParams& p, Plan& plan, float alpha, float beta, cudaStream_t stream);
  Options opt_;
  cudnnHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  DeviceBuffer padded_;
  using Key = std::array<int, 14>;  // n h w cin cout kh kw stride pt pl pb pr dtype alignment-class
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

// The conv epilogue's pre-fill: y[r, c] = residual[r, c] + bias[c] for rows x c elements of `dtype` (residual or
// bias may be null, not both; y may equal residual), fp32 math, one rounding. Exposed for its test.
void conv_bias_residual_fill_cuda(void* y, const void* residual, const void* bias, long long rows, int c, DType dtype,
                                  cudaStream_t stream);

inline void conv2d_cuda(const Conv2dParams& p, CudnnConv& ctx, cudaStream_t stream) { ctx.forward(p, stream); }

}  // namespace diffrt
