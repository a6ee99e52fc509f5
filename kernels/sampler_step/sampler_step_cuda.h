// CUDA entry of the generic fused sampler step (kernels/sampler_step/sampler_step.h), implemented in
// sampler_step.cu. What the GPU loop needs beyond the shared params:
//   * the model dtype: model_out is read and model_in written in fp32, fp16 or bf16 (math fp32, state fp32);
//   * CUDA-graph replay: the row comes from a device table indexed by a device counter (row = table[*counter]),
//     so one captured graph serves every model call (Heun's second calls and PNDM's extra calls included);
//   * torch-mode noise precomputed for all draws: noise + row.noise_slot * noise_draw_stride (stride 0: one
//     buffer refilled by the host before each noisy call); Philox noise is generated in the kernel;
//   * dynamic-thresholding scratch supplied by the caller (no allocation under capture).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "kernels/sampler_step/sampler_step.h"

namespace diffrt {

struct SamplerStepDeviceParams {
  // Shapes, CFG, thresholding constants, device pointers of the slots, image, init_noise, mask; base.row and
  // base.model_out / base.model_in / base.noise are ignored (given below).
  SamplerStepParams base;
  DType model_dtype = DType::F32;
  const void* model_out = nullptr;  // [Bm, H, W, Cm] model_dtype (may be null for rows that never read M/V)
  void* model_in = nullptr;         // [Bm, H, W, Cin] model_dtype, or null
  const StepRow* rows = nullptr;    // device table of rows
  const int* counter = nullptr;     // device row index; null: row 0 of the table
  // Bitwise OR over the table of what its rows need: the launcher sizes its work from it (e.g. the
  // thresholding passes run only when some row thresholds; a row without Thresh skips them on the device).
  bool any_thresh = false;
  uint32_t table_mask = 0;          // OR of the rows' read_mask | write_mask (the buffers the launcher checks)
  bool any_noise = false;           // some row reads step noise
  const float* noise = nullptr;     // torch-mode draws [draws][B, H, W, C], or null for Philox
  int64_t noise_draw_stride = 0;    // elements between draws (0: a single buffer)
  void* workspace = nullptr;        // sampler_step_workspace_bytes(), 16-byte aligned, when any_thresh
  size_t workspace_bytes = 0;
};

// Scratch for dynamic thresholding: |value| per element plus one scale per sample.
size_t sampler_step_workspace_bytes(int b, int h, int w, int c);

// Validates on the host (shapes, pointers, dtype) and launches. Throws Error(InvalidArgument) naming the field.
void sampler_step_cuda(const SamplerStepDeviceParams& p, cudaStream_t stream);

// Loads every kernel this file may launch (all dtypes) so that nothing is loaded lazily while a stream is
// being captured (CUDA_MODULE_LOADING=LAZY would otherwise fail the capture).
void sampler_step_cuda_preload();

}  // namespace diffrt
