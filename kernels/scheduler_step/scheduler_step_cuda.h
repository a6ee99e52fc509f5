// CUDA-only extension of the fused scheduler step (kernels/scheduler_step/scheduler_step.h), implemented in
// kernels/scheduler_step/scheduler_step.cu. It adds what the GPU sampling loop needs and the shared params
// struct does not carry, without touching that struct (the CPU reference keeps compiling unchanged):
//   * model dtype: model_out is read and model_in written in fp32, fp16 or bf16 (math is fp32; the state x
//     stays fp32);
//   * CUDA-graph replay: per-step coefficients come from a device table indexed by a device-side step counter,
//     so one captured graph serves every step (the counter is also the Philox step, like the CPU loop index);
//   * torch-mode noise precomputed for all steps: noise + step * noise_step_stride;
//   * dynamic thresholding scratch supplied by the caller (no allocation under capture).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "base/dtype.h"
#include "kernels/scheduler_step/scheduler_step.h"

namespace diffrt {

struct SchedulerStepDeviceParams {
  // Shapes, flags, seed, noise source and (without a table) the coefficients and step index. Its model_out /
  // model_in fields are ignored; noise is used with noise_step_stride below.
  SchedulerStepParams base;
  DType model_dtype = DType::F32;
  const void* model_out = nullptr;  // model_out: [Bm, H, W, Cm] model_dtype
  void* model_in = nullptr;         // model_in:  [Bm, H, W, C] model_dtype, or null
  // Device table [steps] of coefficients and the device step counter (int). Both set, or both null (then
  // base.k and base.step_index are used). With a table, noise is added where table[step].add_noise and
  // base.noise_source != None; the caller checks beforehand that every noisy step has a source.
  const StepCoeffs* coeff_table = nullptr;
  const int* step_counter = nullptr;
  int64_t noise_step_stride = 0;  // elements between the noise of consecutive steps (0: one buffer)
  // fp32 scratch for dynamic thresholding, scheduler_step_workspace_bytes() bytes, 16-byte aligned. When null
  // and thresholding is on, the launcher allocates stream-ordered (cudaMallocAsync), which also works under
  // stream capture but costs an allocation per step.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Scratch bytes dynamic thresholding needs (|x0| per element plus one scale per sample); 0 when off.
size_t scheduler_step_workspace_bytes(const SchedulerStepParams& p);

// Validates on the host (shapes, pointers, dtype) and launches. Throws Error(InvalidArgument) naming the field.
void scheduler_step_cuda_ex(const SchedulerStepDeviceParams& p, cudaStream_t stream);

}  // namespace diffrt
