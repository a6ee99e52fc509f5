// Small device helpers of the CUDA executor and sampler (runtime/cuda/cuda_kernels.cu). Every launcher is
// asynchronous on `stream`, capturable into a CUDA graph, and reads the step index from device memory where
// one is taken, so a captured graph stays valid for every step.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"

namespace diffrt::cuda_rt {

// out[i] = table[*counter] for i < n (the per-step timestep of every model-batch row).
void fill_timesteps(const float* table, const int* counter, float* out, int n, cudaStream_t stream);
// Copies slice_bytes from table + (*counter) * slice_bytes to out (slice_bytes a multiple of 2).
void copy_step_slice(const void* table, const int* counter, size_t slice_bytes, void* out, cudaStream_t stream);
// ++*counter (one thread).
void increment_counter(int* counter, cudaStream_t stream);
// Initial noise x [B, H, W, C] NHWC fp32: row n is Philox(seed, sample_base + n, step 0, kTagInitial) at the
// NCHW element index, exactly runtime/rng.cpp's fill_philox_normal.
void philox_initial_noise(float* x, uint64_t seed, uint32_t sample_base, int b, int h, int w, int c,
                          cudaStream_t stream);
// model_in [Bm, n_per] (dtype) row r = x row (r % b), converted from fp32.
void broadcast_model_in(const float* x, void* model_in, DType dtype, int b, int bm, int64_t n_per,
                        cudaStream_t stream);

// Loads this file's kernels (cudaFuncGetAttributes), so that a graph capture never triggers a lazy module load.
void preload();

}  // namespace diffrt::cuda_rt
