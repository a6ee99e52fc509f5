// 2-D convolution (cross-correlation) on cuDNN, NHWC activations and KRSC filters:
//   y[n, oy, ox, co] = (bias[co] + sum_{ky,kx,ci} x[n, oy*s - pt + ky, ox*s - pl + kx, ci] w[co, ky, kx, ci]
//                       + residual[n, oy, ox, co]) * out_scale
// Layout: x [N, H, W, Cin] and y [N, Ho, Wo, Cout] are CUDNN_TENSOR_NHWC tensors; w [Cout, KH, KW, Cin]
// is cuDNN's NHWC filter format (KRSC). Data fp32/fp16/bf16, compute fp32 (fp16/bf16 = cuDNN's
// "pseudo-half" configuration, tensor cores allowed). fp32 uses CUDNN_FMA_MATH (no TF32) unless
// Options::allow_tf32.
// Legacy cuDNN API (still in cuDNN 9): per-shape plan = descriptors + the algorithm chosen once by
// cudnnFindConvolutionForwardAlgorithmEx (timed on the real tensors, writing into the real output y, which the
// epilogue pre-fill overwrites next: no scratch output, so the memory planner has nothing extra to count) or, under
// CUDA graph capture, with exhaustive_search off, or when y holds the residual (y == residual: the search would
// destroy it; the executors never alias them), by cudnnGetConvolutionForwardAlgorithm_v7.
// Padding: cuDNN only pads symmetrically. Asymmetric padding (diffusers' Downsample2D with padding=0
// pads right/bottom by 1 before a stride-2 3x3 conv) is done explicitly: a small kernel writes the zero-
// padded input [n, H+pt+pb, W+pl+pr, Cin] of one batch chunk into a context-owned buffer and cuDNN runs with
// pad 0. That costs one extra read+write of the input for the (few, downsampling) convs that need it and keeps
// every cuDNN algorithm available.
// 32-bit descriptors: cuDNN's tensor descriptors take int sizes and strides, so no tensor of one call may reach
// 2^31 elements. The batch runs in chunks that fit (conv_batch_chunks in conv.h: the fewest near-equal chunks,
// at most two distinct plan shapes); a single image too large for it is refused with Error(Unsupported).
// Epilogue, one pass over y and no cudnnAddTensor (deprecated, no documented bf16 NHWC [1,C,1,1] support, and a
// second full read+write of y):
//   1. pre-fill y with residual + bias (or bias alone) in one small vectorised kernel; with a residual and no
//      bias, copy the residual (nothing when y == residual);
//   2. cudnnConvolutionForward with y = alpha * conv + beta * y, alpha = out_scale and beta = out_scale when
//      step 1 wrote y (else 0): y = (conv + residual + bias) * out_scale.
// Traffic beyond the conv itself: the pre-fill reads residual (and the tiny bias) and writes y once; cuDNN's
// beta read of y replaces the write-then-read-then-write of the AddTensor pass. Rounding: the pre-fill rounds
// residual + bias to the storage dtype once, as AddTensor's separate pass did.
// Why not a fused epilogue: cudnnConvolutionBiasActivationForward adds the bias unscaled and, with the identity
// activation, only runs CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM (cuDNN API reference), which would
// take the faster algorithms the search finds away; the graph API's conv_fprop -> pointwise add (bias) ->
// pointwise add (residual) fusion runs through runtime-fusion engines (fp16/bf16 NHWC, tensor cores; fp32 has no
// such engine) whose speed against the plain conv + beta is unmeasured here (no GPU): it is a candidate for a
// measured follow-up, behind the same params, and the simple path stays the one used until then.
//
// Test: tests/gpu/conv_test.cpp (vs conv2d_ref on CIFAR UNet convs, 1x1, strided, asymmetric padding, bias /
// residual / both / neither with out_scale, in place, batch split via Options::max_tensor_elems, all dtypes;
// the pre-fill kernel vs a CPU loop), tests/conv_split_test.cpp (the chunking, CPU). Benchmark: bench
// (TFLOP/s = 2*N*Ho*Wo*Cout*KH*KW*Cin / time).
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/common/cuda_types.cuh"
#include "kernels/conv/conv_cuda.h"

namespace diffrt {

struct CudnnConv::Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace = 0;
  bool pad_explicitly = false;
  int hp = 0, wp = 0;  // padded input extent when pad_explicitly
  ~Plan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
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

// Epilogue pre-fill: y[r, c] = residual[r, c] + bias[c] (either may be null), V elements per thread, math in
// fp32, one rounding to T. y may equal residual (each element is read before it is written, by the same thread).
template <class T, int V>
__global__ void bias_residual_fill_kernel(T* y, const T* residual, const T* __restrict__ bias, long long vecs,
                                          int cvecs) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < vecs;
       i += (long long)gridDim.x * blockDim.x) {
    float acc[V];
    if (residual) {
      load_vec<T, V>(residual + i * V, acc);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    }
    if (bias) {
      float b[V];
      load_vec_ro<T, V>(bias + (i % cvecs) * V, b);
#pragma unroll
      for (int j = 0; j < V; ++j) acc[j] += b[j];
    }
    store_vec<T, V>(y + i * V, acc);
  }
}

template <class T>
void launch_fill(void* y, const void* residual, const void* bias, long long rows, int c, cudaStream_t s) {
  constexpr int kFull = kVecElems<T>;
  const bool wide = c % kFull == 0 && aligned_to(y, 16) && (!residual || aligned_to(residual, 16)) &&
                    (!bias || aligned_to(bias, 16));
  const int v = wide ? kFull : 1;
  const long long vecs = rows * (c / v);
  const unsigned grid = unsigned(std::max<long long>(1, std::min<long long>(ceil_div(vecs, 256), 1 << 20)));
  auto* yt = static_cast<T*>(y);
  auto* rt = static_cast<const T*>(residual);
  auto* bt = static_cast<const T*>(bias);
  if (wide) bias_residual_fill_kernel<T, kFull><<<grid, 256, 0, s>>>(yt, rt, bt, vecs, c / kFull);
  else bias_residual_fill_kernel<T, 1><<<grid, 256, 0, s>>>(yt, rt, bt, vecs, c);
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

// The images [c.first, c.first + c.count) of p: pointers advanced, n = c.count.
Conv2dParams chunk_of(const Conv2dParams& p, const ConvBatchChunk& c) {
  const size_t es = dtype_size(p.dtype);
  const int ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);
  const size_t in_img = size_t(p.h) * size_t(p.w_in) * size_t(p.cin) * es;
  const size_t out_img = size_t(ho) * size_t(wo) * size_t(p.cout) * es;
  Conv2dParams q = p;
  q.n = c.count;
  q.x = static_cast<const char*>(p.x) + size_t(c.first) * in_img;
  q.y = static_cast<char*>(p.y) + size_t(c.first) * out_img;
  if (p.residual) q.residual = static_cast<const char*>(p.residual) + size_t(c.first) * out_img;
  return q;
}

}  // namespace

void conv_bias_residual_fill_cuda(void* y, const void* residual, const void* bias, long long rows, int c, DType dtype,
                                  cudaStream_t stream) {
  DIFFRT_REQUIRE(y && (residual || bias), ErrorCode::InvalidArgument, "conv fill: null y, or neither residual nor bias");
  DIFFRT_REQUIRE(rows > 0 && c > 0, ErrorCode::InvalidArgument, "conv fill: bad shape");
  switch (dtype) {
    case DType::F32: launch_fill<float>(y, residual, bias, rows, c, stream); break;
    case DType::F16: launch_fill<__half>(y, residual, bias, rows, c, stream); break;
    case DType::BF16: launch_fill<__nv_bfloat16>(y, residual, bias, rows, c, stream); break;
  }
}

CudnnConv::CudnnConv() : CudnnConv(Options{}) {}
CudnnConv::CudnnConv(const Options& opt) : opt_(opt) {
  DIFFRT_REQUIRE(opt_.max_tensor_elems > 0 && opt_.max_tensor_elems <= kCudnnMaxTensorElems, ErrorCode::InvalidArgument,
                 "conv: max_tensor_elems must be in [1, 2^31 - 1]");
  DIFFRT_CUDA_CHECK(cudnnCreate(&handle_));
}
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
  DIFFRT_CUDA_CHECK(cudnnCreateFilterDescriptor(&plan->w));
  DIFFRT_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&plan->conv));
  DIFFRT_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NHWC, dt, p.n, p.cin, in_h, in_w));
  DIFFRT_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NHWC, dt, p.n, p.cout, ho, wo));
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
  // The search writes candidates' results into y: never when y holds the residual the epilogue still needs.
  const bool y_holds_residual = p.residual && p.residual == p.y;
  if (opt_.exhaustive_search && !under_capture && !y_holds_residual) {
    // Candidates run on the real x and w and write into the real y, which forward() pre-fills (or cuDNN
    // overwrites with beta = 0) afterwards: no scratch output, nothing for the memory planner to count.
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));  // buffers below may be reallocated
    workspace_.reserve(std::min<size_t>(opt_.max_workspace_bytes, size_t(64) << 20));
    const void* x_in = p.x;
    if (plan->pad_explicitly) {
      padded_.reserve(conv_padded_input_elems(p, p.n) * es);
      launch_pad<uint16_t>(p.x, padded_.get(), p, in_h, in_w, (long long)(p.cin * es / 2), stream);
      x_in = padded_.get();
    }
    DIFFRT_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle_, plan->x, x_in, plan->w, p.w, plan->conv,
                                                             plan->y, p.y, kMaxAlgos, &returned, perf,
                                                             workspace_.get(), workspace_.bytes()));
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
  const size_t pad_bytes = conv_padded_input_elems(p, p.n) * es;
  if (workspace_.bytes() < plan->workspace || padded_.bytes() < pad_bytes) {
    DIFFRT_REQUIRE(!under_capture, ErrorCode::InvalidArgument,
                   "conv: buffers must grow during CUDA graph capture; run the shape once first");
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));
    workspace_.reserve(plan->workspace);
    padded_.reserve(pad_bytes);
  }
  return *plans_.emplace(key, std::move(plan)).first->second;
}

void CudnnConv::run_chunk(const Conv2dParams& p, Plan& plan, float alpha, float beta, cudaStream_t stream) {
  const size_t es = dtype_size(p.dtype);
  const void* x_in = p.x;
  if (plan.pad_explicitly) {
    const size_t run = size_t(p.cin) * es;
    const bool wide = run % 16 == 0 && aligned_to(p.x, 16) && aligned_to(padded_.get(), 16);
    if (wide) launch_pad<uint4>(p.x, padded_.get(), p, plan.hp, plan.wp, (long long)(run / 16), stream);
    else launch_pad<uint16_t>(p.x, padded_.get(), p, plan.hp, plan.wp, (long long)(run / 2), stream);
    x_in = padded_.get();
  }
  DIFFRT_CUDA_CHECK(cudnnConvolutionForward(handle_, &alpha, plan.x, x_in, plan.w, p.w, plan.conv, plan.algo,
                                            workspace_.get(), plan.workspace, &beta, plan.y, p.y));
}

void CudnnConv::forward(const Conv2dParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::InvalidArgument, "conv: null x, w or y");
  DIFFRT_REQUIRE(p.y != p.x, ErrorCode::InvalidArgument, "conv: y aliases x");
  DIFFRT_REQUIRE(std::isfinite(p.out_scale), ErrorCode::InvalidArgument, "conv: out_scale not finite");
  // Validates the shape; chunks of at most max_tensor_elems elements per tensor (cuDNN's 32-bit descriptors).
  const std::vector<ConvBatchChunk> chunks = conv_batch_chunks(p, opt_.max_tensor_elems);
  const int ho = conv_out_dim(p.h, p.kh, p.stride, p.pad_top, p.pad_bottom);
  const int wo = conv_out_dim(p.w_in, p.kw, p.stride, p.pad_left, p.pad_right);

  // 1. Every chunk's plan first: a first-time algorithm search writes into y, which step 2 then overwrites.
  std::vector<Plan*> plans(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) plans[i] = &plan_for(chunk_of(p, chunks[i]), stream);
  DIFFRT_CUDA_CHECK(cudnnSetStream(handle_, stream));

  // 2. y = residual + bias, bias or residual, over the whole batch in one pass (64-bit indexing: no chunks).
  const size_t es = dtype_size(p.dtype);
  const long long rows = (long long)p.n * ho * wo;
  bool prefilled = false;
  if (p.bias) {
    conv_bias_residual_fill_cuda(p.y, p.residual, p.bias, rows, p.cout, p.dtype, stream);
    prefilled = true;
  } else if (p.residual) {
    if (p.residual != p.y)
      DIFFRT_CUDA_CHECK(cudaMemcpyAsync(p.y, p.residual, size_t(rows) * size_t(p.cout) * es,
                                        cudaMemcpyDeviceToDevice, stream));
    prefilled = true;
  }

  // 3. y = out_scale * conv + out_scale * y (beta = 0 when nothing was pre-filled), chunk by chunk.
  const float alpha = p.out_scale, beta = prefilled ? p.out_scale : 0.0f;
  for (size_t i = 0; i < chunks.size(); ++i) run_chunk(chunk_of(p, chunks[i]), *plans[i], alpha, beta, stream);
}

}  // namespace diffrt
