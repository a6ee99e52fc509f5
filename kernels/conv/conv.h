// 2-D convolution (cross-correlation) over NHWC with a KRSC filter:
//   y[n, oy, ox, co] = (bias[co] + sum_{ky,kx,ci} x[n, oy*s-pt+ky, ox*s-pl+kx, ci] * w[co, ky, kx, ci]
//                       + residual[n, oy, ox, co]) * out_scale
// Asymmetric padding expresses diffusers' downsample_padding=0 (pad right/bottom by 1).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "base/dtype.h"

namespace diffrt {

struct Conv2dParams {
  const void* x = nullptr;         // x: [N, H, W, Cin]
  const void* w = nullptr;         // w: [Cout, KH, KW, Cin]
  const void* bias = nullptr;      // [Cout] or null
  const void* residual = nullptr;  // [N, Ho, Wo, Cout] or null
  void* y = nullptr;               // y: [N, Ho, Wo, Cout]; must not alias x
  int n = 0, h = 0, w_in = 0, cin = 0, cout = 0, kh = 1, kw = 1, stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  float out_scale = 1.0f;
  DType dtype = DType::F32;
};

inline int conv_out_dim(int in, int k, int stride, int pad_lo, int pad_hi) {
  return (in + pad_lo + pad_hi - k) / stride + 1;
}

// cuDNN's legacy tensor descriptors take 32-bit sizes and strides: every tensor of one cuDNN call must hold
// fewer than 2^31 elements (a batch-16 SD VAE decode at 1024x1024 has 16 x 1024 x 1024 x 128 = 2^31 in one
// activation). The CUDA conv therefore runs the batch in chunks that fit.
constexpr int64_t kCudnnMaxTensorElems = (int64_t(1) << 31) - 1;

// One chunk of the batch: images [first, first + count).
struct ConvBatchChunk {
  int first = 0, count = 0;
  bool operator==(const ConvBatchChunk& o) const { return first == o.first && count == o.count; }
};

// Splits the batch of `p` into the fewest chunks in which the input (the explicitly padded input when the
// padding is asymmetric: conv_cudnn.cu pads it into a scratch of the chunk's size), the output and the residual
// each hold at most `max_elems` elements. Chunk sizes differ by at most one, larger first (at most two distinct
// shapes, so at most two cuDNN plans). One chunk {0, n} when the whole batch fits. Pure function (tested on the
// CPU by tests/conv_split_test.cpp). Throws Error(Unsupported) when a single image, or the filter, exceeds
// max_elems, and Error(InvalidArgument) for a bad shape.
std::vector<ConvBatchChunk> conv_batch_chunks(const Conv2dParams& p, int64_t max_elems = kCudnnMaxTensorElems);

// Elements of the explicitly padded input of `count` images when `p`'s padding is asymmetric (0 when it is
// symmetric: cuDNN pads in place). What CudnnConv's padding scratch holds for a chunk of `count` images.
uint64_t conv_padded_input_elems(const Conv2dParams& p, int count);

// CPU reference: im2col + blocked GEMM, OpenMP over both cores. `scratch` must hold
// conv2d_ref_scratch_floats(p) floats.
size_t conv2d_ref_scratch_floats(const Conv2dParams& p);
void conv2d_ref(const Conv2dParams& p, float* scratch);

}  // namespace diffrt
