// CUDA generic fused sampler step: formula, registers and layouts in sampler_step.h; this file reproduces
// sampler_step_ref.cpp operation for operation.
//
// Bit equality with the CPU reference: every +, -, *, / goes through the _rn intrinsics (philox::f_add etc.) and
// sqrt through __fsqrt_rn, so nvcc can neither contract into FMAs nor approximate; min/max follow std::min/max
// (first argument on ties and NaN); Philox noise uses kernels/common/philox.h (bit-identical to the host);
// quantile's lerp is the same FMA as torch's (__fmaf_rn == std::fma). The one exception is the Exp op (DDPM
// learned_range only): CUDA expf may differ from the C library by an ulp or two.
//
// Kernels (all read the row of this call from a device table at *counter, copied to shared memory per block):
//   abs_kernel       (rows with Thresh only) runs the program up to the Thresh instruction per element and
//                    stores |value| into scratch;
//   quantile_kernel  (rows with Thresh only) one block per sample: exact k-th smallest |value| by 4-pass 8-bit
//                    radix select on the float bits for the two ranks torch.quantile interpolates, the FMA lerp,
//                    then clamp to [1, sample_max_value] (kernels/common/quantile_select.cuh);
//   step_kernel      one thread per group of 4 consecutive NCHW elements of one sample (one Philox call gives
//                    their 4 normals): loads the registers the row reads (guided model output, variance channel,
//                    noise, slots, image, initial noise, mask), interprets the program, writes the persistent
//                    registers back and the next model input (model dtype, both CFG halves, first C channels).
// All are launched every call when the table needs them (thresholding rows may be anywhere), so one captured
// graph serves the whole loop; rows that do not threshold return from the first two immediately.
//
// Test: tests/gpu/sampler_step_test.cpp (vs sampler_step_ref on every class's plan rows, all dtypes, CFG orders,
// thresholding, Philox and buffer noise, graph replay). Benchmark: memory-bound (reads Bm*Cm + the slots the row
// reads, writes the slots it writes + Bm*C model input elements).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/philox.h"
#include "kernels/common/quantile_select.cuh"
#include "kernels/sampler_step/sampler_step_cuda.h"

namespace diffrt {
namespace {

using philox::f_add;
using philox::f_div;
using philox::f_mul;
using philox::f_sub;
using namespace step_reg;

constexpr int kThreads = 256;
constexpr int kSelectThreads = 1024;

struct Args {
  const void* model_out;
  void* model_in;
  float* slots[kNumPersistent];
  const float* image;
  const float* init_noise;
  const float* mask;
  const StepRow* rows;
  const int* counter;
  const float* noise;
  int64_t noise_stride;
  float* absbuf;  // [B, n_per]
  float* scale;   // [B]
  int b, c, cm, cin;
  int64_t hw, n_per;
  bool cfg, cond_first;
  float guidance, ratio, smax;
  uint64_t seed;
  uint32_t sample_base;
};

// Copies this call's row into shared memory (every thread of the block participates).
__device__ __forceinline__ void load_row(const Args& a, StepRow* dst) {
  const StepRow* src = a.rows + (a.counter ? *a.counter : 0);
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src);
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  static_assert(sizeof(StepRow) % 4 == 0, "StepRow is copied as words");
  for (int k = threadIdx.x; k < int(sizeof(StepRow) / 4); k += blockDim.x) d[k] = s[k];
  __syncthreads();
}

__device__ __forceinline__ float apply(StepOp op, float x, float y, float s) {
  switch (op) {
    case StepOp::Mov: return x;
    case StepOp::Add: return f_add(x, y);
    case StepOp::Sub: return f_sub(x, y);
    case StepOp::Mul: return f_mul(x, y);
    case StepOp::Div: return f_div(x, y);
    case StepOp::Max: return ref_max(x, y);
    case StepOp::Min: return ref_min(x, y);
    case StepOp::Sqrt: return __fsqrt_rn(x);
    case StepOp::Exp: return expf(x);
    case StepOp::Thresh: return f_div(ref_min(ref_max(x, -s), s), s);
  }
  return x;
}

// Loads the registers element (n, i, ch) reads; z is this element's noise when the row uses Philox.
template <class T>
__device__ __forceinline__ void load_regs(const Args& a, const StepRow& r, int n, int64_t i, int ch, float z,
                                          float* reg) {
  const int64_t j = i * a.c + ch;
  const int64_t g = int64_t(n) * a.n_per + j;
  const uint32_t m = r.read_mask;
#pragma unroll
  for (int s = 0; s < kNumPersistent; ++s)
    if (m & (1u << s)) reg[s] = a.slots[s][g];
  if (m & ((1u << kM) | (1u << kV))) {
    const T* mo = static_cast<const T*>(a.model_out);
    const int64_t row_len = a.hw * a.cm;
    const int cond_row = a.cfg ? (a.cond_first ? n : a.b + n) : n;
    const int uncond_row = a.cond_first ? a.b + n : n;
    float cv = to_f(mo[int64_t(cond_row) * row_len + i * a.cm + ch]);
    if (a.cfg) {
      const float u = to_f(mo[int64_t(uncond_row) * row_len + i * a.cm + ch]);
      cv = f_add(u, f_mul(a.guidance, f_sub(cv, u)));
    }
    reg[kM] = cv;
    if (m & (1u << kV)) reg[kV] = to_f(mo[int64_t(cond_row) * row_len + i * a.cm + a.c + ch]);
  }
  if (m & (1u << kZ)) reg[kZ] = a.noise ? a.noise[int64_t(r.noise_slot) * a.noise_stride + g] : z;
  if (m & (1u << kImg)) reg[kImg] = a.image[g];
  if (m & (1u << kNoi)) reg[kNoi] = a.init_noise[g];
  if (m & (1u << kMask)) reg[kMask] = a.mask[int64_t(n) * a.hw + i];
}

__device__ __forceinline__ void run(const StepRow& r, float* reg, int end, float s) {
  for (int q = 0; q < end; ++q) {
    const StepInstr in = r.ins[q];
    const float x = in.a >= kConst ? r.k[in.a - kConst] : reg[in.a];
    const float y = in.b == kNone ? 0.0f : (in.b >= kConst ? r.k[in.b - kConst] : reg[in.b]);
    reg[in.dst] = apply(in.op, x, y, s);
  }
}

template <class T, bool kAbs>
__global__ void __launch_bounds__(kThreads) step_kernel(Args a) {
  // Raw shared storage: StepRow has default member initializers, which __shared__ variables cannot run.
  __shared__ __align__(16) unsigned char row_mem[sizeof(StepRow)];
  StepRow& row = *reinterpret_cast<StepRow*>(row_mem);
  load_row(a, &row);
  if (kAbs && row.thresh_at < 0) return;
  const int end = kAbs ? row.thresh_at : row.n_ins;
  const int64_t groups_per = (a.n_per + 3) / 4;
  const int64_t total = int64_t(a.b) * groups_per;
  const bool philox_noise = row.noise == StepNoise::Step && !a.noise && (row.read_mask & (1u << kZ));
  T* mi = static_cast<T*>(a.model_in);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int n = int(t / groups_per);
    const uint32_t group = uint32_t(t % groups_per);
    float z4[4] = {0.f, 0.f, 0.f, 0.f};
    if (philox_noise) philox::normal4(a.seed, a.sample_base + uint32_t(n), row.noise_key, philox::kTagStep, group, z4);
    const float s = (!kAbs && row.thresh_at >= 0) ? a.scale[n] : 1.0f;
#pragma unroll 1
    for (int q = 0; q < 4; ++q) {
      const int64_t e = int64_t(group) * 4 + q;  // NCHW element index within the sample
      if (e >= a.n_per) break;
      const int ch = int(e / a.hw);
      const int64_t i = e % a.hw;
      float reg[kNumRegs];
      load_regs<T>(a, row, n, i, ch, z4[q], reg);
      run(row, reg, end, s);
      const int64_t g = int64_t(n) * a.n_per + i * a.c + ch;
      if (kAbs) {
        const uint8_t src = row.ins[row.thresh_at].a;
        a.absbuf[g] = fabsf(src >= kConst ? row.k[src - kConst] : reg[src]);
        continue;
      }
      if (row.in_reg != kNone && mi) {
        const T v = from_f<T>(reg[row.in_reg]);
        mi[(int64_t(n) * a.hw + i) * a.cin + ch] = v;
        if (a.cfg) mi[(int64_t(a.b + n) * a.hw + i) * a.cin + ch] = v;
      }
#pragma unroll
      for (int p = 0; p < kNumPersistent; ++p)
        if (row.write_mask & (1u << p)) a.slots[p][g] = reg[p];
    }
  }
}

__global__ void __launch_bounds__(kSelectThreads) quantile_kernel(Args a) {
  __shared__ __align__(16) unsigned char row_mem[sizeof(StepRow)];
  StepRow& row = *reinterpret_cast<StepRow*>(row_mem);
  __shared__ unsigned hist[256];
  __shared__ unsigned bcast[2];
  load_row(a, &row);
  if (row.thresh_at < 0) return;
  const int n = blockIdx.x;
  const uint32_t* v = reinterpret_cast<const uint32_t*>(a.absbuf) + int64_t(n) * a.n_per;
  // torch 1.13: rank = q * (n - 1) in float32; lerp between floor and ceil with an FMA.
  const float rank = f_mul(a.ratio, float(a.n_per - 1));
  const float s =
      quantile_scale(v, a.n_per, rank, int64_t(floorf(rank)), int64_t(ceilf(rank)), a.smax, hist, bcast);
  if (threadIdx.x == 0) a.scale[n] = s;
}

unsigned grid_for(int64_t work, int threads) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(work, threads), int64_t(1) << 20)));
}

size_t align256(size_t v) { return (v + 255) & ~size_t(255); }

template <class T>
void launch_all(const Args& a, bool any_thresh, cudaStream_t stream) {
  const unsigned grid = grid_for(int64_t(a.b) * ((a.n_per + 3) / 4), kThreads);
  if (any_thresh) {
    step_kernel<T, true><<<grid, kThreads, 0, stream>>>(a);
    DIFFRT_CUDA_CHECK_LAUNCH();
    quantile_kernel<<<unsigned(a.b), kSelectThreads, 0, stream>>>(a);
    DIFFRT_CUDA_CHECK_LAUNCH();
  }
  step_kernel<T, false><<<grid, kThreads, 0, stream>>>(a);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, "sampler_step_cuda: " + msg); }

}  // namespace

size_t sampler_step_workspace_bytes(int b, int h, int w, int c) {
  if (b <= 0) return 0;
  const size_t n_per = size_t(h) * size_t(w) * size_t(c);
  return align256(size_t(b) * n_per * sizeof(float)) + align256(size_t(b) * sizeof(float));
}

void sampler_step_cuda_preload() {
  cudaFuncAttributes attr;
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<float, true>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<float, false>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<__half, true>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<__half, false>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<__nv_bfloat16, true>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, step_kernel<__nv_bfloat16, false>));
  DIFFRT_CUDA_CHECK(cudaFuncGetAttributes(&attr, quantile_kernel));
}

void sampler_step_cuda(const SamplerStepDeviceParams& dp, cudaStream_t stream) {
  const SamplerStepParams& p = dp.base;
  if (!dp.rows) bad("rows is null");
  if (p.b <= 0 || p.h <= 0 || p.w <= 0 || p.c <= 0) bad("shape must be positive");
  if (p.cm < p.c) bad("cm must be >= c");
  const int cin = p.cin ? p.cin : p.c;
  if (cin < p.c) bad("cin must be >= c");
  if (uint64_t(p.h) * uint64_t(p.w) * uint64_t(std::max(std::max(p.c, p.cm), cin)) > 0xffffffffull)
    bad("h*w*channels exceeds 2^32");
  const uint32_t m = dp.table_mask;
  for (int s = 0; s < kNumPersistent; ++s)
    if ((m & (1u << s)) && !p.slots[s]) bad("slot " + std::to_string(s) + " is used by the table but null");
  if ((m & ((1u << kM) | (1u << kV))) && !dp.model_out) bad("model_out is null");
  if ((m & (1u << kV)) && p.cm < 2 * p.c) bad("the table reads the variance channels but cm < 2c");
  if ((m & (1u << kImg)) && !p.image) bad("image is null");
  if ((m & (1u << kNoi)) && !p.init_noise) bad("init_noise is null");
  if ((m & (1u << kMask)) && !p.mask) bad("mask is null");
  if (!std::isfinite(p.guidance_scale)) bad("guidance_scale is not finite");
  Args a{};
  a.model_out = dp.model_out;
  a.model_in = dp.model_in;
  for (int s = 0; s < kNumPersistent; ++s) a.slots[s] = p.slots[s];
  a.image = p.image;
  a.init_noise = p.init_noise;
  a.mask = p.mask;
  a.rows = dp.rows;
  a.counter = dp.counter;
  a.noise = dp.noise;
  a.noise_stride = dp.noise_draw_stride;
  a.b = p.b; a.c = p.c; a.cm = p.cm; a.cin = cin;
  a.hw = int64_t(p.h) * p.w;
  a.n_per = a.hw * p.c;
  a.cfg = p.cfg;
  a.cond_first = p.cfg_order == CfgOrder::CondFirst;
  a.guidance = p.guidance_scale;
  a.ratio = p.thresh_ratio;
  a.smax = p.thresh_max;
  a.seed = p.seed;
  a.sample_base = p.sample_index_base;
  if (dp.any_thresh) {
    const size_t need = sampler_step_workspace_bytes(p.b, p.h, p.w, p.c);
    if (!dp.workspace || dp.workspace_bytes < need)
      bad("thresholding needs a workspace of " + std::to_string(need) + " bytes");
    if (!aligned_to(dp.workspace, 16)) bad("workspace is not 16-byte aligned");
    a.absbuf = static_cast<float*>(dp.workspace);
    a.scale = reinterpret_cast<float*>(static_cast<char*>(dp.workspace) + align256(size_t(p.b) * a.n_per * sizeof(float)));
  }
  switch (dp.model_dtype) {
    case DType::F32: launch_all<float>(a, dp.any_thresh, stream); break;
    case DType::F16: launch_all<__half>(a, dp.any_thresh, stream); break;
    case DType::BF16: launch_all<__nv_bfloat16>(a, dp.any_thresh, stream); break;
  }
}

}  // namespace diffrt
