// 2-D convolution (cross-correlation) on cuDNN, NHWC activations and KRSC filters:
//   y[n, oy, ox, co] = (bias[co] + sum_{ky,kx,ci} x[n, oy*s - pt + ky, ox*s - pl + kx, ci] w[co, ky, kx, ci]
//                       + residual[n, oy, ox, co]) * out_scale
// Layout: x [N, H, W, Cin] and y [N, Ho, Wo, Cout] are CUDNN_TENSOR_NHWC tensors; w [Cout, KH, KW, Cin]
// is cuDNN's NHWC filter format (KRSC). Data fp32/fp16/bf16, compute fp32 (fp16/bf16 = cuDNN's
// "pseudo-half" configuration, tensor cores allowed). fp32 uses CUDNN_FMA_MATH (no TF32) unless
// Options::allow_tf32.
// Legacy cuDNN API (still in cuDNN 9): per-shape plan = descriptors + the algorithm chosen once by
// cudnnFindConvolutionForwardAlgorithmEx (timed on the real tensors, into a scratch y) or, under CUDA graph
// capture or with exhaustive_search off, by cudnnGetConvolutionForwardAlgorithm_v7.
// Padding: cuDNN only pads symmetrically. Asymmetric padding (diffusers' Downsample2D with padding=0
// pads right/bottom by 1 before a stride-2 3x3 conv) is done explicitly: a small kernel writes the zero-
// padded input [N, H+pt+pb, W+pl+pr, Cin] into a context-owned buffer and cuDNN runs with pad 0. That
// costs one extra read+write of the input for the (few, downsampling) convs that need it and keeps every
// cuDNN algorithm available.
// Epilogue with y = alpha * conv + beta * y:
//   residual: copy residual into y (skipped when y == residual), alpha = beta = out_scale;
//   no residual: alpha = out_scale, beta = 0;
//   bias: cudnnAddTensor(alpha = out_scale, bias [1, Cout, 1, 1]) onto y.
// A fused conv+bias+residual epilogue (cuDNN graph API / runtime fusion) is the next step; the extra pass
// over y costs little next to a 3x3 conv's math.
//
// Test: tests/gpu/conv_test.cpp (vs conv2d_ref on CIFAR UNet convs, 1x1, strided, asymmetric padding,
// residual + scale, all dtypes). Benchmark: bench (TFLOP/s = 2*N*Ho*Wo*Cout*KH*KW*Cin / time).
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/common/cuda_types.cuh"
#include "kernels/conv/conv_cuda.h"

namespace diffrt {

struct CudnnConv::Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace = 0;
  bool pad_explicitly = false;
  int hp = 0, wp = 0;  // padded input extent when pad_explicitly
  ~Plan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

namespace {

// Zero-padded copy, one `W`-sized word per thread: xp [N, Hp, Wp, C] from x [N, H, W, C].
template <class W>
__global__ void pad_kernel(const W* __restrict__ x, W* __restrict__ xp, int h, int w, int hp, int wp, int pt,
                           int pl, long long cw, long long total) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    long long c = i % cw, pix = i / cw;
    int ox = int(pix % wp);
    long long t = pix / wp;
    int oy = int(t % hp);
    long long n = t / hp;
    int iy = oy - pt, ix = ox - pl;
    W v{};
    if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = x[((n * h + iy) * w + ix) * cw + c];
    xp[i] = v;
  }
}

template <class W>
void launch_pad(const void* x, void* xp, const Conv2dParams& p, int hp, int wp, long long cw, cudaStream_t s) {
  long long total = (long long)p.n * hp * wp * cw;
  unsigned grid = unsigned(std::max<long long>(1, std::min<long long>(ceil_div(total, 256), 1 << 20)));
  pad_kernel<W><<<grid, 256, 0, s>>>(static_cast<const W*>(x), static_cast<W*>(xp), p.h, p.w_in, hp, wp,
                                     p.pad_top, p.pad_left, cw, total);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::F16: return CUDNN_DATA_HALF;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
  }
  return CUDNN_DATA_FLOAT;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  DIFFRT_CUDA_CHECK(cudaStreamIsCapturing(stream, &st));
  return st != cudaStreamCaptureStatusNone;
}

}  // namespace

CudnnConv::CudnnConv() : CudnnConv(Options{}) {}
CudnnConv::CudnnConv(const Options& opt) : opt_(opt) { DIFFRT_CUDA_CHECK(cudnnCreate(&handle_)); }
CudnnConv::~CudnnConv() {
  plans_.clear();
  if (handle_) cudnnDestroy(handle_);
}

CudnnConv::Plan& CudnnConv::plan_for(const Conv2dParams& p, cudaStream_t stream) {
  const int ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  const int align_class = aligned_to(p.x, 16) && aligned_to(p.w, 16) && aligned_to(p.y, 16) ? 16 : 0;
  Key key{p.n, p.h, p.w_in, p.cin, p.cout, p.kh, p.kw, p.stride, p.pad_top, p.pad_left, p.pad_bottom,
          p.pad_right, int(p.dtype), align_class};
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;

  const bool under_capture = capturing(stream);
  auto plan = std::make_unique<Plan>();
  const cudnnDataType_t dt = cudnn_type(p.dtype);
  plan->pad_explicitly = p.pad_top != p.pad_bottom || p.pad_left != p.pad_right;
  int in_h = p.h, in_w = p.w_in, pad_h = p.pad_top, pad_w = p.pad_left;
  if (plan->pad_explicitly) {
    plan->hp = in_h = p.h + p.pad_top + p.pad_bottom;
    plan->wp = in_w = p.w_in + p.pad_left + p.pad_right;
    pad_h = pad_w = 0;
  }
  DIFFRT_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan->x));
  DIFFRT_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan->y));
  DIFFRT_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan->bias));
  DIFFRT_CUDA_CHECK(cudnnCreateFilterDescriptor(&plan->w));
  DIFFRT_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
  DIFFRT_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NHWC, dt, p.n, p.cin, in_h, in_w));
  DIFFRT_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NHWC, dt, p.n, p.cout, ho, wo));
  DIFFRT_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan->bias, CUDNN_TENSOR_NHWC, dt, 1, p.cout, 1, 1));
  DIFFRT_CUDA_CHECK(cudnnSetFilter4dDescriptor(plan->w, dt, CUDNN_TENSOR_NHWC, p.cout, p.cin, p.kh, p.kw));
  DIFFRT_CUDA_CHECK(cudnnSetConvolution2dDescriptor(plan->conv, pad_h, pad_w, p.stride, p.stride, 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  const cudnnMathType_t math = p.dtype != DType::F32 ? CUDNN_TENSOR_OP_MATH
                               : opt_.allow_tf32     ? CUDNN_DEFAULT_MATH
                                                     : CUDNN_FMA_MATH;
  DIFFRT_CUDA_CHECK(cudnnSetConvolutionMathType(plan->conv, math));
  int oh = 0, ow = 0, on = 0, oc = 0;
  DIFFRT_CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->x, plan->w, &on, &oc, &oh, &ow));
  DIFFRT_REQUIRE(on == p.n && oc == p.cout && oh == ho && ow == wo, ErrorCode::Internal,
                 "conv: cuDNN output shape disagrees with conv_out_dim");

  DIFFRT_CUDA_CHECK(cudnnSetStream(handle_, stream));
  constexpr int kMaxAlgos = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
  int returned = 0;
  const size_t es = dtype_size(p.dtype);
  if (opt_.exhaustive_search && !under_capture) {
    // Candidates run on the real x and w, writing into a scratch y (y may alias the residual).
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));  // buffers below may be reallocated
    workspace_.reserve(std::min<size_t>(opt_.max_workspace_bytes, size_t(64) << 20));
    DeviceBuffer y_scratch(size_t(p.n) * ho * wo * p.cout * es);
    const void* x_in = p.x;
    if (plan->pad_explicitly) {
      padded_.reserve(size_t(p.n) * in_h * in_w * p.cin * es);
      launch_pad<uint16_t>(p.x, padded_.get(), p, in_h, in_w, (long long)(p.cin * es / 2), stream);
      x_in = padded_.get();
    }
    DIFFRT_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle_, plan->x, x_in, plan->w, p.w, plan->conv,
                                                             plan->y, y_scratch.get(), kMaxAlgos, &returned,
                                                             perf, workspace_.get(), workspace_.bytes()));
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    DIFFRT_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, plan->x, plan->w, plan->conv, plan->y,
                                                             kMaxAlgos, &returned, perf));
  }
  int pick = -1;
  for (int i = 0; i < returned && pick < 0; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= opt_.max_workspace_bytes &&
        (under_capture ? perf[i].memory <= workspace_.bytes() : true))
      pick = i;
  DIFFRT_REQUIRE(pick >= 0, ErrorCode::Unsupported,
                 "conv: cuDNN found no algorithm for n=" + std::to_string(p.n) + " " + std::to_string(p.h) +
                     "x" + std::to_string(p.w_in) + "x" + std::to_string(p.cin) + " -> " +
                     std::to_string(p.cout) + " k" + std::to_string(p.kh) + "x" + std::to_string(p.kw) +
                     " s" + std::to_string(p.stride) + " " + dtype_name(p.dtype));
  plan->algo = perf[pick].algo;
  // fp32 without TF32 stays on FMA math whatever math type the timed candidate reported.
  const cudnnMathType_t chosen_math = (p.dtype == DType::F32 && !opt_.allow_tf32) ? CUDNN_FMA_MATH : perf[pick].mathType;
  DIFFRT_CUDA_CHECK(cudnnSetConvolutionMathType(plan->conv, chosen_math));
  DIFFRT_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle_, plan->x, plan->w, plan->conv, plan->y,
                                                            plan->algo, &plan->workspace));
  const size_t pad_bytes = plan->pad_explicitly ? size_t(p.n) * in_h * in_w * p.cin * es : 0;
  if (workspace_.bytes() < plan->workspace || padded_.bytes() < pad_bytes) {
    DIFFRT_REQUIRE(!under_capture, ErrorCode::InvalidArgument,
                   "conv: buffers must grow during CUDA graph capture; run the shape once first");
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));
    workspace_.reserve(plan->workspace);
    padded_.reserve(pad_bytes);
  }
  return *plans_.emplace(key, std::move(plan)).first->second;
}

void CudnnConv::forward(const Conv2dParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::InvalidArgument, "conv: null x, w or y");
  DIFFRT_REQUIRE(p.y != p.x, ErrorCode::InvalidArgument, "conv: y aliases x");
  DIFFRT_REQUIRE(p.n > 0 && p.h > 0 && p.w_in > 0 && p.cin > 0 && p.cout > 0 && p.kh > 0 && p.kw > 0 &&
                     p.stride > 0 && p.pad_top >= 0 && p.pad_left >= 0 && p.pad_bottom >= 0 && p.pad_right >= 0,
                 ErrorCode::InvalidArgument, "conv: bad shape or padding");
  const int ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  DIFFRT_REQUIRE(p.h + p.pad_top + p.pad_bottom >= p.kh && p.w_in + p.pad_left + p.pad_right >= p.kw && ho > 0 &&
                     wo > 0,
                 ErrorCode::InvalidArgument, "conv: kernel larger than the padded input");
  DIFFRT_REQUIRE(std::isfinite(p.out_scale), ErrorCode::InvalidArgument, "conv: out_scale not finite");

  Plan& plan = plan_for(p, stream);
  DIFFRT_CUDA_CHECK(cudnnSetStream(handle_, stream));
  const size_t es = dtype_size(p.dtype);
  const void* x_in = p.x;
  if (plan.pad_explicitly) {
    const size_t run = size_t(p.cin) * es;
    const bool wide = run % 16 == 0 && aligned_to(p.x, 16) && aligned_to(padded_.get(), 16);
    if (wide) launch_pad<uint4>(p.x, padded_.get(), p, plan.hp, plan.wp, (long long)(run / 16), stream);
    else launch_pad<uint16_t>(p.x, padded_.get(), p, plan.hp, plan.wp, (long long)(run / 2), stream);
    x_in = padded_.get();
  }
  const size_t y_bytes = size_t(p.n) * ho * wo * p.cout * es;
  if (p.residual && p.residual != p.y)
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(p.y, p.residual, y_bytes, cudaMemcpyDeviceToDevice, stream));
  const float alpha = p.out_scale, beta = p.residual ? p.out_scale : 0.0f;
  DIFFRT_CUDA_CHECK(cudnnConvolutionForward(handle_, &alpha, plan.x, x_in, plan.w, p.w, plan.conv, plan.algo,
                                            workspace_.get(), plan.workspace, &beta, plan.y, p.y));
  if (p.bias) {
    const float one = 1.0f;
    DIFFRT_CUDA_CHECK(cudnnAddTensor(handle_, &alpha, plan.bias, p.bias, &one, plan.y, p.y));
  }
}

}  // namespace diffrt
