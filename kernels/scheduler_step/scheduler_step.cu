// CUDA fused DDPM/DDIM scheduler step: the formula, layouts and noise contract are in scheduler_step.h; this
// file reproduces scheduler_step_ref.cpp operation for operation.
//
// Bit equality with the CPU reference: every product, sum and quotient goes through the _rn intrinsics
// (philox::f_add/f_sub/f_mul/f_div), so nvcc can neither contract a*b+c into an FMA nor use approximate
// division; the reference does the same float32 ops in the same order (GCC, ISO mode: no contraction). min/max
// use the reference's std::min/std::max semantics (NaN propagation included). Philox noise uses the shared
// kernels/common/philox.h, so it is bit-identical to the CPU generator. The one exception is learned_range's
// exp(0.5 * log_var): CUDA expf and the C library may differ by 1-2 ulp in sigma (documented in the test).
//
// Kernels:
//   step_kernel      one thread per group of 4 consecutive NCHW elements of one sample (one Philox call
//                    gives their 4 normals); reads model_out (fp32/fp16/bf16) and x, writes x, pred_x0 and the
//                    next model input (model dtype, both CFG halves).
//   abs_x0_kernel    (dynamic thresholding only) |x0| per element into scratch, same x0 formula.
//   quantile_kernel  (dynamic thresholding only) one block per sample: exact k-th smallest |x0| by 4-pass
//                    8-bit radix select on the float bits (non-negative floats order like their bits), for the
//                    two ranks torch.quantile interpolates between, then the clamp to [1, sample_max_value]
//                    (kernels/common/quantile_select.cuh).
// Per-step scalars come either from the params (eager) or from a device table indexed by a device counter
// (CUDA-graph replay: one captured graph for all steps).
//
// Test: tests/gpu/scheduler_step_test.cpp (vs scheduler_step_ref, every prediction/variance type, CFG, eta,
// thresholding, Philox bits). Benchmark: memory-bound (reads Bm*Cm + B*C, writes B*C + Bm*C elements).
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/philox.h"
#include "kernels/common/quantile_select.cuh"
#include "kernels/scheduler_step/scheduler_step.h"
#include "kernels/scheduler_step/scheduler_step_cuda.h"

namespace diffrt {
namespace {

using philox::f_add;
using philox::f_div;
using philox::f_mul;
using philox::f_sub;

constexpr int kThreads = 256;
constexpr int kSelectThreads = 1024;

// Everything the kernels need besides the coefficients, by value.
struct StepArgs {
  const void* model_out;
  float* x;
  void* model_in;
  const float* noise;
  float* pred_x0;
  const float* abs_x0;       // thresholding scratch [B, n_per]
  float* thresh_scale;       // [B]
  const StepCoeffs* table;   // or null
  const int* counter;        // or null
  StepCoeffs k;              // used when table is null
  uint32_t step_index;       // used when counter is null
  int64_t noise_step_stride;
  int b, c, cm;
  int64_t hw, n_per;
  bool cfg, learned_split, thresholding, clip_sample, use_clipped;
  float guidance_scale, clip_range, ratio, sample_max_value;
  SamplerKind kind;
  PredictionType prediction;
  VarianceType variance;
  NoiseSource noise_source;
  uint64_t seed;
  uint32_t sample_index_base;
};

__device__ __forceinline__ const StepCoeffs& coeffs_of(const StepArgs& a, uint32_t* step) {
  if (a.counter) {
    int s = *a.counter;
    *step = uint32_t(s);
    return a.table[s];
  }
  *step = a.step_index;
  return a.k;
}

// Guided model output m (first C channels) for sample n, pixel i, channel ch; var from the cond half.
template <class T>
__device__ __forceinline__ float guided(const StepArgs& a, int n, int64_t i, int ch) {
  const T* mo = static_cast<const T*>(a.model_out);
  const int64_t row = a.hw * a.cm;
  float cv = to_f(mo[int64_t(a.cfg ? a.b + n : n) * row + i * a.cm + ch]);
  if (a.cfg) {
    float u = to_f(mo[int64_t(n) * row + i * a.cm + ch]);
    cv = f_add(u, f_mul(a.guidance_scale, f_sub(cv, u)));
  }
  return cv;
}

// x0 from the model output; for DDIM sample / v prediction also rewrites eps as the reference does.
__device__ __forceinline__ float predict_x0(const StepArgs& a, const StepCoeffs& k, float xv, float* eps) {
  float m = *eps, x0 = 0.f;
  switch (a.prediction) {
    case PredictionType::Epsilon: x0 = f_div(f_sub(xv, f_mul(k.sqrt_beta_prod_t, m)), k.sqrt_alpha_prod_t); break;
    case PredictionType::Sample:
      x0 = m;
      if (a.kind == SamplerKind::Ddim) *eps = f_div(f_sub(xv, f_mul(k.sqrt_alpha_prod_t, m)), k.sqrt_beta_prod_t);
      break;
    case PredictionType::VPrediction:
      x0 = f_sub(f_mul(k.sqrt_alpha_prod_t, xv), f_mul(k.sqrt_beta_prod_t, m));
      if (a.kind == SamplerKind::Ddim) *eps = f_add(f_mul(k.sqrt_alpha_prod_t, m), f_mul(k.sqrt_beta_prod_t, xv));
      break;
  }
  return x0;
}

template <class T>
__global__ void __launch_bounds__(kThreads) abs_x0_kernel(StepArgs a) {
  uint32_t step;
  const StepCoeffs& k = coeffs_of(a, &step);
  const int64_t total = int64_t(a.b) * a.n_per;
  float* out = const_cast<float*>(a.abs_x0);
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x) {
    const int n = int(g / a.n_per);
    const int64_t j = g % a.n_per;  // NHWC index within the sample
    const int64_t i = j / a.c;
    const int ch = int(j % a.c);
    float eps = guided<T>(a, n, i, ch);
    float x0 = predict_x0(a, k, a.x[g], &eps);
    out[g] = fabsf(x0);
  }
}

__global__ void __launch_bounds__(kSelectThreads) quantile_kernel(StepArgs a) {
  __shared__ unsigned hist[256];
  __shared__ unsigned bcast[2];
  const int n = blockIdx.x;
  const uint32_t* v = reinterpret_cast<const uint32_t*>(a.abs_x0) + int64_t(n) * a.n_per;
  // torch: rank = q * (n - 1) in float32; below = trunc(rank), above = ceil(rank), clamped to [0, n-1].
  const float rank = f_mul(a.ratio, float(a.n_per - 1));
  const float s =
      quantile_scale(v, a.n_per, rank, int64_t(rank), int64_t(ceilf(rank)), a.sample_max_value, hist, bcast);
  if (threadIdx.x == 0) a.thresh_scale[n] = s;
}

template <class T>
__global__ void __launch_bounds__(kThreads) step_kernel(StepArgs a) {
  uint32_t step;
  const StepCoeffs& kr = coeffs_of(a, &step);
  const StepCoeffs k = kr;
  const int64_t groups_per = (a.n_per + 3) / 4;
  const int64_t total = int64_t(a.b) * groups_per;
  const bool noisy = k.add_noise && a.noise_source != NoiseSource::None;
  T* mi = static_cast<T*>(a.model_in);
  const T* mo = static_cast<const T*>(a.model_out);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int n = int(t / groups_per);
    const uint32_t group = uint32_t(t % groups_per);
    float z4[4] = {0.f, 0.f, 0.f, 0.f};
    if (noisy && a.noise_source == NoiseSource::Philox)
      philox::normal4(a.seed, a.sample_index_base + uint32_t(n), step, philox::kTagStep, group, z4);
    const float s = a.thresholding ? a.thresh_scale[n] : 1.0f;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t e = int64_t(group) * 4 + q;  // NCHW element index within the sample
      if (e >= a.n_per) break;
      const int ch = int(e / a.hw);
      const int64_t i = e % a.hw;
      const int64_t j = i * a.c + ch;  // NHWC index within the sample
      const int64_t gx = int64_t(n) * a.n_per + j;
      const float xv = a.x[gx];
      float eps = guided<T>(a, n, i, ch);
      float x0 = predict_x0(a, k, xv, &eps);
      if (a.thresholding) {
        x0 = f_div(ref_min(ref_max(x0, -s), s), s);
      } else if (a.clip_sample) {
        x0 = ref_min(ref_max(x0, -a.clip_range), a.clip_range);
      }
      float out;
      if (a.kind == SamplerKind::Ddpm) {
        out = f_add(f_mul(k.x0_coeff, x0), f_mul(k.xt_coeff, xv));
      } else {
        float ev = eps;
        if (a.use_clipped) ev = f_div(f_sub(xv, f_mul(k.sqrt_alpha_prod_t, x0)), k.sqrt_beta_prod_t);
        out = f_add(f_mul(k.sqrt_alpha_prod_prev, x0), f_mul(k.dir_coeff, ev));
      }
      if (noisy) {
        const float z = a.noise_source == NoiseSource::Buffer
                            ? a.noise[int64_t(step) * a.noise_step_stride + gx]
                            : z4[q];
        float term;
        if (a.kind == SamplerKind::Ddim) {
          term = f_mul(k.std_dev_t, z);
        } else if (a.variance == VarianceType::Learned && a.learned_split) {
          const float v = to_f(mo[int64_t(a.cfg ? a.b + n : n) * a.hw * a.cm + i * a.cm + a.c + ch]);
          term = f_mul(__fsqrt_rn(v), z);
        } else if (a.variance == VarianceType::LearnedRange && a.learned_split) {
          const float v = to_f(mo[int64_t(a.cfg ? a.b + n : n) * a.hw * a.cm + i * a.cm + a.c + ch]);
          const float f = f_div(f_add(v, 1.0f), 2.0f);
          const float logv = f_add(f_mul(f, k.log_var_max), f_mul(f_sub(1.0f, f), k.log_var_min));
          term = f_mul(expf(f_mul(0.5f, logv)), z);  // expf: within 2 ulp of the C library
        } else {
          term = f_mul(k.noise_std, z);
        }
        out = f_add(out, term);
      }
      a.x[gx] = out;
      if (a.pred_x0) a.pred_x0[gx] = x0;
      if (mi) {
        mi[gx] = from_f<T>(out);
        if (a.cfg) mi[int64_t(a.b) * a.n_per + gx] = from_f<T>(out);
      }
    }
  }
}

unsigned grid_for(int64_t work, int threads) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(work, threads), int64_t(1) << 20)));
}

template <class T>
void launch_all(const StepArgs& a, cudaStream_t stream) {
  if (a.thresholding) {
    abs_x0_kernel<T><<<grid_for(int64_t(a.b) * a.n_per, kThreads), kThreads, 0, stream>>>(a);
    DIFFRT_CUDA_CHECK_LAUNCH();
    quantile_kernel<<<unsigned(a.b), kSelectThreads, 0, stream>>>(a);
    DIFFRT_CUDA_CHECK_LAUNCH();
  }
  step_kernel<T><<<grid_for(int64_t(a.b) * ((a.n_per + 3) / 4), kThreads), kThreads, 0, stream>>>(a);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

size_t align256(size_t v) { return (v + 255) & ~size_t(255); }

}  // namespace

size_t scheduler_step_workspace_bytes(const SchedulerStepParams& p) {
  if (!p.thresholding || p.b <= 0) return 0;
  const size_t n_per = size_t(p.h) * size_t(p.w) * size_t(p.c);
  return align256(size_t(p.b) * n_per * sizeof(float)) + align256(size_t(p.b) * sizeof(float));
}

void scheduler_step_cuda_ex(const SchedulerStepDeviceParams& dp, cudaStream_t stream) {
  const SchedulerStepParams& p = dp.base;
  if (!dp.model_out) fail(ErrorCode::InvalidArgument, "scheduler_step: model_out is null");
  if ((dp.coeff_table == nullptr) != (dp.step_counter == nullptr))
    fail(ErrorCode::InvalidArgument, "scheduler_step: coeff_table and step_counter must be set together");
  {
    // The shared validation, on a copy that carries the real model_out (and, with a table, no per-step flag).
    SchedulerStepParams v = p;
    v.model_out = static_cast<const float*>(dp.model_out);
    if (dp.coeff_table) v.k.add_noise = false;
    scheduler_step_validate(v);
    if (dp.coeff_table && p.noise_source == NoiseSource::Buffer && !p.noise)
      fail(ErrorCode::InvalidArgument, "scheduler_step: noise_source is Buffer but noise is null");
  }
  StepArgs a{};
  a.model_out = dp.model_out;
  a.x = p.x;
  a.model_in = dp.model_in;
  a.noise = p.noise;
  a.pred_x0 = p.pred_x0;
  a.table = dp.coeff_table;
  a.counter = dp.step_counter;
  a.k = p.k;
  a.step_index = p.step_index;
  a.noise_step_stride = dp.noise_step_stride;
  a.b = p.b; a.c = p.c; a.cm = p.cm;
  a.hw = int64_t(p.h) * p.w;
  a.n_per = a.hw * p.c;
  a.cfg = p.cfg;
  a.learned_split = p.cm == 2 * p.c &&
                    (p.variance == VarianceType::Learned || p.variance == VarianceType::LearnedRange);
  a.thresholding = p.thresholding;
  a.clip_sample = p.clip_sample;
  a.use_clipped = p.use_clipped_model_output;
  a.guidance_scale = p.guidance_scale;
  a.clip_range = p.clip_sample_range;
  a.ratio = p.dynamic_thresholding_ratio;
  a.sample_max_value = p.sample_max_value;
  a.kind = p.kind;
  a.prediction = p.prediction;
  a.variance = p.variance;
  a.noise_source = p.noise_source;
  a.seed = p.seed;
  a.sample_index_base = p.sample_index_base;

  void* ws = dp.workspace;
  const size_t need = scheduler_step_workspace_bytes(p);
  bool owned = false;
  if (need > 0) {
    if (ws && dp.workspace_bytes < need)
      fail(ErrorCode::InvalidArgument, "scheduler_step: workspace of " + std::to_string(dp.workspace_bytes) +
                                           " bytes, thresholding needs " + std::to_string(need));
    if (ws && !aligned_to(ws, 16)) fail(ErrorCode::InvalidArgument, "scheduler_step: workspace is not 16-byte aligned");
    if (!ws) {
      DIFFRT_CUDA_CHECK(cudaMallocAsync(&ws, need, stream));
      owned = true;
    }
    a.abs_x0 = static_cast<const float*>(ws);
    a.thresh_scale = reinterpret_cast<float*>(static_cast<char*>(ws) + align256(size_t(p.b) * a.n_per * sizeof(float)));
  }
  try {
    switch (dp.model_dtype) {
      case DType::F32: launch_all<float>(a, stream); break;
      case DType::F16: launch_all<__half>(a, stream); break;
      case DType::BF16: launch_all<__nv_bfloat16>(a, stream); break;
    }
  } catch (...) {
    if (owned) (void)cudaFreeAsync(ws, stream);
    throw;
  }
  if (owned) DIFFRT_CUDA_CHECK(cudaFreeAsync(ws, stream));
}

void scheduler_step_cuda(const SchedulerStepParams& p, cudaStream_t stream) {
  SchedulerStepDeviceParams dp;
  dp.base = p;
  dp.model_dtype = DType::F32;
  dp.model_out = p.model_out;
  dp.model_in = p.model_in;
  scheduler_step_cuda_ex(dp, stream);
}

}  // namespace diffrt
