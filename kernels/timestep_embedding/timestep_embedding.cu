// Timestep embedding in one kernel: sinusoid -> Linear -> SiLU -> Linear (+ class-embedding row).
//   half = dim/2, freq[i] = exp(-ln(max_period) * i / (half - freq_shift)), arg_i = t * freq[i]
//   e = [sin(arg), cos(arg)] ([cos, sin] when flip), 0 appended when dim is odd
//   h = silu(W1 e + b1)          W1: [T, dim]
//   out = W2 h + b2 (+ class_table[label])   W2: [T, T], class_table: [num_classes, T]
// The sinusoid follows diffusers' fp32 order of operations (exponent, exp, t * freq all in fp32) and uses
// accurate sinf/cosf/expf: the argument reaches ~1000 rad, where fast-math approximations are off by
// far more than an fp16 ulp. Math is fp32; weights and out are the storage dtype.
//
// Grid (N * steps, splits), block 256: each block recomputes the sinusoid and the whole hidden vector h
// (T x dim MACs, a warp per output row, 16-byte weight loads) in shared memory, then computes its 1/splits
// share of the T output rows. Splitting the second (T x T, the larger) layer over a few blocks cuts the
// latency of this weight-streaming kernel at batch 1-2 (SD: T=1280 -> 8 blocks per sample) at the cost of
// re-reading W1 from L2. timestep_embedding_steps_cuda runs all steps of a sampling run at once so the
// embedding leaves the sampling loop entirely.
//
// Test: tests/gpu/timestep_embedding_test.cpp (vs timestep_embedding_ref; t up to 999, odd dim, flip,
// shift, class rows, all dtypes). Benchmark: bench (bytes = weights once per block).
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/kernel_attrs.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "kernels/timestep_embedding/timestep_embedding_cuda.h"

namespace diffrt {
namespace {

struct TembArgs {
  const float* timesteps;
  const int32_t* labels;
  const void *w1, *b1, *w2, *b2, *table;
  void* out;
  int n, dim, t_dim, num_classes, rows_per_split;
  bool flip;
  float freq_shift, log_max_period;
};

// Dot of one weight row (len elements of T, V-wide loads) with the fp32 vector v in shared memory,
// reduced over the warp; every lane gets the result.
template <class T, int V>
__device__ __forceinline__ float warp_dot(const T* __restrict__ w, const float* v, int len, int lane) {
  float acc = 0.0f;
  for (int k = lane * V; k < len; k += 32 * V) {
    float wv[V];
    load_vec_ro<T, V>(w + k, wv);
#pragma unroll
    for (int j = 0; j < V; ++j) acc = fmaf(wv[j], v[k + j], acc);
  }
  return warp_sum(acc);
}

template <class T, int V>
__global__ void __launch_bounds__(256) temb_kernel(TembArgs a) {
  extern __shared__ float temb_smem[];  // e [dim], h [T]
  float* e = temb_smem;
  float* h = temb_smem + a.dim;
  const int row = blockIdx.x;  // = step * n + sample
  const int sample = row % a.n;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
  const float t = a.timesteps[row];

  const int half = a.dim / 2;
  const float denom = float(half) - a.freq_shift;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float expo = (-a.log_max_period * float(i)) / denom;
    float arg = t * expf(expo);
    float sv = sinf(arg), cv = cosf(arg);
    e[i] = a.flip ? cv : sv;
    e[half + i] = a.flip ? sv : cv;
  }
  if (threadIdx.x == 0 && (a.dim & 1)) e[a.dim - 1] = 0.0f;
  __syncthreads();

  const T* w1 = static_cast<const T*>(a.w1);
  const T* b1 = static_cast<const T*>(a.b1);
  for (int o = warp; o < a.t_dim; o += nwarps) {
    float s = warp_dot<T, V>(w1 + size_t(o) * a.dim, e, a.dim, lane);
    if (lane == 0) h[o] = silu_f(s + (b1 ? to_f(b1[o]) : 0.0f));
  }
  __syncthreads();

  const T* w2 = static_cast<const T*>(a.w2);
  const T* b2 = static_cast<const T*>(a.b2);
  const T* table = static_cast<const T*>(a.table);
  T* out = static_cast<T*>(a.out) + size_t(row) * a.t_dim;
  int label = -1;
  if (table) label = a.labels[sample];
  const int o0 = blockIdx.y * a.rows_per_split;
  const int o1 = min(a.t_dim, o0 + a.rows_per_split);
  for (int o = o0 + warp; o < o1; o += nwarps) {
    float s = warp_dot<T, V>(w2 + size_t(o) * a.t_dim, h, a.t_dim, lane);
    if (lane == 0) {
      s += b2 ? to_f(b2[o]) : 0.0f;
      if (table) {
        // Labels are validated by the caller; an out-of-range one poisons the row instead of reading
        // out of bounds.
        s += (label >= 0 && label < a.num_classes) ? to_f(table[size_t(label) * a.t_dim + o]) : NAN;
      }
      out[o] = from_f<T>(s);
    }
  }
}

template <class T>
void temb_launch(const TembArgs& a, int rows, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const size_t vb = kFull * sizeof(T);
  const bool full = a.dim % kFull == 0 && a.t_dim % kFull == 0 && aligned_to(a.w1, vb) && aligned_to(a.w2, vb);
  const int splits = std::max(1, std::min(8, a.t_dim / 160));
  TembArgs args = a;
  args.rows_per_split = int(ceil_div(a.t_dim, splits));
  const dim3 grid(unsigned(rows), unsigned(ceil_div(a.t_dim, args.rows_per_split)));
  const size_t smem = size_t(a.dim + a.t_dim) * sizeof(float);
  auto kernel = full ? temb_kernel<T, kFull> : temb_kernel<T, 1>;
  ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);  // once per kernel and device
  kernel<<<grid, 256, smem, stream>>>(args);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void timestep_embedding_steps_cuda(const TimestepEmbeddingParams& p, int steps, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.timesteps && p.w1 && p.w2 && p.out, ErrorCode::InvalidArgument,
                 "timestep_embedding_cuda: null timesteps, w1, w2 or out");
  DIFFRT_REQUIRE(p.n > 0 && steps > 0 && p.dim > 1 && p.out_dim > 0, ErrorCode::InvalidArgument,
                 "timestep_embedding_cuda: bad shape n=" + std::to_string(p.n) + " steps=" +
                     std::to_string(steps) + " dim=" + std::to_string(p.dim) + " out_dim=" +
                     std::to_string(p.out_dim));
  DIFFRT_REQUIRE(float(p.dim / 2) != p.freq_shift, ErrorCode::InvalidArgument,
                 "timestep_embedding_cuda: dim/2 == freq_shift (division by zero)");
  DIFFRT_REQUIRE(!p.class_table || (p.num_classes > 0 && p.class_labels), ErrorCode::InvalidArgument,
                 "timestep_embedding_cuda: class_table needs class_labels and num_classes > 0");
  DIFFRT_REQUIRE(p.max_period > 0.0f, ErrorCode::InvalidArgument, "timestep_embedding_cuda: max_period <= 0");
  const long long rows = (long long)p.n * steps;
  DIFFRT_REQUIRE(rows <= 0x7fffffffLL, ErrorCode::Unsupported, "timestep_embedding_cuda: too many rows");
  DIFFRT_REQUIRE(size_t(p.dim + p.out_dim) * sizeof(float) <= 200 * 1024, ErrorCode::Unsupported,
                 "timestep_embedding_cuda: dim + out_dim too large for shared memory");
  // -ln(max_period) rounded to fp32 first, like torch's `-math.log(max_period) * arange(float32)`.
  TembArgs a{p.timesteps, p.class_labels, p.w1, p.b1, p.w2, p.b2, p.class_table, p.out, p.n, p.dim,
             p.out_dim, p.num_classes, 0, p.flip, p.freq_shift, float(std::log(double(p.max_period)))};
  switch (p.dtype) {
    case DType::F32: temb_launch<float>(a, int(rows), stream); break;
    case DType::F16: temb_launch<__half>(a, int(rows), stream); break;
    case DType::BF16: temb_launch<__nv_bfloat16>(a, int(rows), stream); break;
  }
}

void timestep_embedding_cuda(const TimestepEmbeddingParams& p, cudaStream_t stream) {
  timestep_embedding_steps_cuda(p, 1, stream);
}

}  // namespace diffrt
