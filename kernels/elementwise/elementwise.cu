// Layout and elementwise ops of the UNet graph (NHWC), all memory-bound streaming kernels.
//   upsample2x: y[n, oy, ox, c] = x[n, oy/2, ox/2, c]           (nearest, diffusers Upsample2D)
//   concat:     y[p, 0:Ca] = a[p, :], y[p, Ca:Ca+Cb] = b[p, :]   (channel concat, skip connections)
//   affine:     y = x * scale + shift                            (center_input_sample: 2x - 1)
//   geglu:      y[r, j] = x[r, j] * gelu(x[r, F + j])            (diffusers GEGLU, exact erf GELU)
// upsample2x and concat only move bits, so they are templated on the machine word they move (16, 8, 4 or
// 2 bytes: the widest that divides every channel run and every pointer), not on the dtype: one kernel per
// word width serves fp32, fp16 and bf16. upsample2x reads each input word once and writes it four times.
// affine converts storage -> fp32 -> storage with 16-byte vectors when aligned, scalar elements otherwise
// (and for the tail). Grids are 1-D grid-stride loops with 64-bit indices.
// geglu reads the hidden and gate halves of a row with 16-byte vectors (when F is a multiple of the vector
// and x, y are 16-byte aligned; scalar otherwise) and writes y once: 3 rows F s bytes, the minimum, and
// no [rows, F] gelu temporary as in eager PyTorch. gelu(g) = g * normcdff(g) (= 0.5 g erfc(-g / sqrt 2),
// accurate for g << 0 too) in fp32, one rounding to the storage type. The grid is 2-D (vector column
// blocks x rows, looping over rows beyond 65535), so no per-element 64-bit division.
//
// Test: tests/gpu/elementwise_test.cpp (vs *_ref, odd channel counts that force narrow words, all dtypes,
// guard bytes); geglu: tests/gpu/geglu_test.cpp. Benchmark: bench (GB/s against the measured copy bandwidth).
#include <algorithm>
#include <initializer_list>
#include <cstdint>
#include <string>

#include "base/checked_math.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/elementwise/elementwise.h"

namespace diffrt {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(long long work) {
  return unsigned(std::max<long long>(1, std::min<long long>(ceil_div(work, kThreads), 1 << 20)));
}

// Widest word (bytes) dividing every run length (bytes) and every pointer.
int word_bytes(std::initializer_list<size_t> runs, std::initializer_list<const void*> ptrs) {
  for (int w = 16; w > 2; w /= 2) {
    bool ok = true;
    for (size_t r : runs) ok = ok && r % size_t(w) == 0;
    for (const void* p : ptrs) ok = ok && aligned_to(p, size_t(w));
    if (ok) return w;
  }
  return 2;  // every dtype is at least 2 bytes
}

template <class W>
__global__ void __launch_bounds__(kThreads) upsample2x_kernel(const W* __restrict__ x, W* __restrict__ y,
                                                              int h, int w, long long cw, long long total) {
  // total = N*H*W*cw input words; cw = words per pixel.
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    long long pix = i / cw, c = i % cw;
    long long ix = pix % w, t = pix / w;
    long long iy = t % h, n = t / h;
    W v = x[i];
    long long ow = 2LL * w;
    long long o = ((n * 2 * h + 2 * iy) * ow + 2 * ix) * cw + c;  // y: [N, 2H, 2W, C]
    y[o] = v;
    y[o + cw] = v;
    y[o + ow * cw] = v;
    y[o + ow * cw + cw] = v;
  }
}

template <class W>
__global__ void __launch_bounds__(kThreads) concat_kernel(const W* __restrict__ a, const W* __restrict__ b,
                                                          W* __restrict__ y, long long aw, long long bw,
                                                          long long total) {
  const long long yw = aw + bw;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    long long p = i / yw, c = i % yw;
    y[i] = c < aw ? a[p * aw + c] : b[p * bw + (c - aw)];
  }
}

template <class T, int V>
__global__ void __launch_bounds__(kThreads) affine_kernel(const T* x, T* y, long long count, float scale,
                                                          float shift) {
  const long long nvec = count / V;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long tid = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long i = tid; i < nvec; i += stride) {
    float v[V];
    load_vec<T, V>(x + i * V, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = fmaf(v[j], scale, shift);
    store_vec<T, V>(y + i * V, v);
  }
  for (long long i = nvec * V + tid; i < count; i += stride) y[i] = from_f<T>(fmaf(to_f(x[i]), scale, shift));
}

template <class T, int V>
__global__ void __launch_bounds__(kThreads) geglu_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                         long long rows, int f) {
  const int nvec = f / V;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // vector column within the row
  if (i >= nvec) return;
  for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* xr = x + r * 2 * f;  // x: [rows, 2F] = [hidden | gate]
    float h[V], g[V];
    load_vec_ro<T, V>(xr + i * V, h);
    load_vec_ro<T, V>(xr + f + i * V, g);
#pragma unroll
    for (int j = 0; j < V; ++j) h[j] *= g[j] * normcdff(g[j]);
    store_vec<T, V>(y + r * f + i * V, h);  // y: [rows, F]
  }
}

template <class T>
void geglu_launch(const GegluParams& p, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const bool wide = p.f % kFull == 0 && aligned_to(x, 16) && aligned_to(y, 16);
  const int nvec = wide ? p.f / kFull : p.f;
  // A row's vectors are split evenly over the fewest blocks of <= kThreads threads (SD fp16: F = 1280 is 160
  // vectors -> 1 x 160 threads, F = 5120 is 640 -> 3 x 224), so no block is mostly idle.
  const long long col_blocks = ceil_div(nvec, kThreads);
  const int threads = int(ceil_div(ceil_div(nvec, col_blocks), 32) * 32);
  const dim3 grid(unsigned(col_blocks), unsigned(std::min<long long>(p.rows, 65535)));
  if (wide) geglu_kernel<T, kFull><<<grid, threads, 0, stream>>>(x, y, p.rows, p.f);
  else geglu_kernel<T, 1><<<grid, threads, 0, stream>>>(x, y, p.rows, p.f);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class W>
void upsample_launch(const Upsample2xParams& p, long long cw, cudaStream_t stream) {
  long long total = (long long)p.n * p.h * p.w * cw;
  upsample2x_kernel<W><<<grid_for(total), kThreads, 0, stream>>>(static_cast<const W*>(p.x),
                                                                 static_cast<W*>(p.y), p.h, p.w, cw, total);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class W>
void concat_launch(const ConcatParams& p, long long aw, long long bw, cudaStream_t stream) {
  long long total = p.pixels * (aw + bw);
  concat_kernel<W><<<grid_for(total), kThreads, 0, stream>>>(
      static_cast<const W*>(p.a), static_cast<const W*>(p.b), static_cast<W*>(p.y), aw, bw, total);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <class T>
void affine_launch(const AffineParams& p, cudaStream_t stream) {
  constexpr int kFull = kVecElems<T>;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  if (aligned_to(x, 16) && aligned_to(y, 16)) {
    affine_kernel<T, kFull><<<grid_for(ceil_div(p.count, kFull)), kThreads, 0, stream>>>(x, y, p.count, p.scale, p.shift);
  } else {
    affine_kernel<T, 1><<<grid_for(p.count), kThreads, 0, stream>>>(x, y, p.count, p.scale, p.shift);
  }
  DIFFRT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void upsample2x_cuda(const Upsample2xParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.y && p.x != p.y, ErrorCode::InvalidArgument,
                 "upsample2x_cuda: null or aliased x/y");
  DIFFRT_REQUIRE(p.n > 0 && p.h > 0 && p.w > 0 && p.c > 0, ErrorCode::InvalidArgument,
                 "upsample2x_cuda: bad shape");
  const size_t es = dtype_size(p.dtype);
  const size_t run = size_t(p.c) * es;
  switch (word_bytes({run}, {p.x, p.y})) {
    case 16: upsample_launch<uint4>(p, (long long)(run / 16), stream); break;
    case 8: upsample_launch<uint2>(p, (long long)(run / 8), stream); break;
    case 4: upsample_launch<uint32_t>(p, (long long)(run / 4), stream); break;
    default: upsample_launch<uint16_t>(p, (long long)(run / 2), stream); break;
  }
}

void concat_cuda(const ConcatParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.a && p.b && p.y && p.y != p.a && p.y != p.b, ErrorCode::InvalidArgument,
                 "concat_cuda: null or aliased pointers");
  DIFFRT_REQUIRE(p.pixels > 0 && p.ca > 0 && p.cb > 0, ErrorCode::InvalidArgument, "concat_cuda: bad shape");
  const size_t es = dtype_size(p.dtype);
  const size_t ra = size_t(p.ca) * es, rb = size_t(p.cb) * es;
  switch (word_bytes({ra, rb}, {p.a, p.b, p.y})) {
    case 16: concat_launch<uint4>(p, (long long)(ra / 16), (long long)(rb / 16), stream); break;
    case 8: concat_launch<uint2>(p, (long long)(ra / 8), (long long)(rb / 8), stream); break;
    case 4: concat_launch<uint32_t>(p, (long long)(ra / 4), (long long)(rb / 4), stream); break;
    default: concat_launch<uint16_t>(p, (long long)(ra / 2), (long long)(rb / 2), stream); break;
  }
}

void affine_cuda(const AffineParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "affine_cuda: null x or y");
  DIFFRT_REQUIRE(p.count >= 0, ErrorCode::InvalidArgument, "affine_cuda: negative count");
  if (p.count == 0) return;
  switch (p.dtype) {
    case DType::F32: affine_launch<float>(p, stream); break;
    case DType::F16: affine_launch<__half>(p, stream); break;
    case DType::BF16: affine_launch<__nv_bfloat16>(p, stream); break;
  }
}

void geglu_cuda(const GegluParams& p, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.dtype == DType::F32 || p.dtype == DType::F16 || p.dtype == DType::BF16,
                 ErrorCode::InvalidArgument, "geglu_cuda: bad dtype");
  DIFFRT_REQUIRE(p.rows >= 0 && p.f > 0 && p.f <= (1 << 30), ErrorCode::InvalidArgument,
                 "geglu_cuda: bad shape rows=" + std::to_string(p.rows) + " f=" + std::to_string(p.f));
  const size_t es = dtype_size(p.dtype);
  uint64_t x_bytes = 0;
  DIFFRT_REQUIRE(mul_ok(uint64_t(p.rows), uint64_t(p.f) * 2 * es, &x_bytes), ErrorCode::InvalidArgument,
                 "geglu_cuda: rows * 2F overflows");
  if (p.rows == 0) return;
  DIFFRT_REQUIRE(p.x && p.y, ErrorCode::InvalidArgument, "geglu_cuda: null x or y");
  const uintptr_t xa = reinterpret_cast<uintptr_t>(p.x), ya = reinterpret_cast<uintptr_t>(p.y);
  DIFFRT_REQUIRE(ya + x_bytes / 2 <= xa || xa + x_bytes <= ya, ErrorCode::InvalidArgument,
                 "geglu_cuda: y overlaps x");
  switch (p.dtype) {
    case DType::F32: geglu_launch<float>(p, stream); break;
    case DType::F16: geglu_launch<__half>(p, stream); break;
    case DType::BF16: geglu_launch<__nv_bfloat16>(p, stream); break;
  }
}

}  // namespace diffrt
