// The generic fused sampler step: one kernel runs every scheduler diffrt implements (DDPM, DDIM, PNDM, DPM-Solver
// multistep, Euler, Euler a, Heun, UniPC, LCM), reading per model call a StepRow that the host planned
// (runtime/sampler_plan.h). A row is a short straight-line program of float32 operations over per-element
// registers, so each scheduler's update keeps torch's exact operation order (no FMA, true divisions), yet the
// kernel stays one generic loop body: adding a scheduler adds a planner, never a kernel.
//
// Per element (sample n of B, pixel i, channel c < C):
//   M   = guided model output: cond + nothing, or u + g*(c - u) on the first C channels (CFG; rows [uncond; cond]
//         for SD pipelines, [cond; uncond] for DiT), read from model_out [Bm, H, W, Cm];
//   V   = channel C + c of the cond row (learned variance, needs Cm >= 2C);
//   Z   = this row's noise (Philox or a buffer);
//   X   = the sample x_t (persistent), P1..P7 = persistent state slots (model-output history, saved samples,
//         accumulators: whatever the planner keeps there);
//   IMG = image latents, NOI = the initial noise (both [B, H, W, C]), MASK = inpainting mask [B, H, W];
//   T0.. = temporaries.
// The program then runs in order; a Thresh instruction applies diffusers' dynamic thresholding (per-sample
// quantile of |value| over C*H*W, computed in a first pass over the program prefix). After the program, the
// register `in_reg` (if any) is written to model_in [Bm, H, W, Cin] in channels [0, C) of both CFG halves (Cin > C
// leaves the extra constant channels of an inpainting UNet untouched) and the persistent registers written by the
// program are stored back.
//
// Layouts: model_out [Bm, H, W, Cm], x and slots [B, H, W, C] fp32 (NHWC), noise [B, H, W, C] (Buffer), model_in
// [Bm, H, W, Cin], mask [B, H, W]. Philox noise: element index c*H*W + y*W + x (NCHW order), sample index
// sample_index_base + n, step = row.noise_key, tag = row.noise_tag (kernels/common/philox.h).
// Reference: sampler_step_ref.cpp (CPU, the semantics); CUDA: sampler_step.cu (same ops with _rn intrinsics).
// Tests: tests/sampler_loop_test.cpp (every fixture loop through the CPU reference), tests/gpu/sampler_step_test.cpp.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/cfg_order.h"
#include "base/dtype.h"

namespace diffrt {

namespace step_reg {
constexpr uint8_t kX = 0;         // sample, persistent
constexpr uint8_t kSlot1 = 1;     // P1..P7: persistent slots 1..7
constexpr int kNumPersistent = 8; // X + 7 slots
constexpr uint8_t kM = 8;         // guided model output
constexpr uint8_t kV = 9;         // learned-variance channel
constexpr uint8_t kZ = 10;        // noise
constexpr uint8_t kImg = 11;      // image latents
constexpr uint8_t kNoi = 12;      // initial noise
constexpr uint8_t kMask = 13;     // mask
constexpr uint8_t kT0 = 14;       // first temporary
constexpr int kNumRegs = 32;      // registers 0..31
constexpr uint8_t kConst = 32;    // operands >= 32 name constant k[op - 32]
constexpr uint8_t kNone = 255;
}  // namespace step_reg

enum class StepOp : uint8_t {
  Mov,     // dst = a
  Add,     // dst = a + b
  Sub,     // dst = a - b
  Mul,     // dst = a * b
  Div,     // dst = a / b (true IEEE division)
  Max,     // dst = max(a, b) as std::max (returns a when unordered)
  Min,     // dst = min(a, b) as std::min
  Sqrt,    // dst = sqrt(a) (correctly rounded)
  Exp,     // dst = exp(a) (C library / CUDA expf: may differ by an ulp; only DDPM learned_range uses it)
  Thresh,  // dst = min(max(a, -s), s) / s with s = clamp(quantile(|a|, ratio), 1, max) per sample
};

struct StepInstr {
  StepOp op = StepOp::Mov;
  uint8_t dst = 0, a = 0, b = 0;
};

constexpr int kMaxStepInstr = 48;
constexpr int kMaxStepConst = 32;

// Noise a row reads in Z (the initial noise is the NOI register).
enum class StepNoise : uint8_t { None, Step };

struct StepRow {
  StepInstr ins[kMaxStepInstr];
  float k[kMaxStepConst] = {};
  uint8_t n_ins = 0, n_const = 0;
  int8_t thresh_at = -1;             // index of the Thresh instruction, -1 when none (at most one per row)
  uint8_t in_reg = step_reg::kNone;  // register holding the next model input, or kNone
  StepNoise noise = StepNoise::None;
  uint32_t noise_key = 0;            // Philox step index of Step noise
  int32_t noise_slot = -1;           // Buffer noise: index of the draw this row reads
  uint32_t read_mask = 0;            // bit r: register r is read before it is written (inputs to load)
  uint32_t write_mask = 0;           // bit r: register r is written (persistent ones are stored back)
};


struct SamplerStepParams {
  const StepRow* row = nullptr;  // host row (CPU reference); the CUDA entry takes a device table instead
  int b = 0, h = 0, w = 0, c = 0;
  int cm = 0;                    // model output channels (>= c)
  int cin = 0;                   // model input channels (>= c; 0 means c)
  bool cfg = false;
  CfgOrder cfg_order = CfgOrder::UncondFirst;
  float guidance_scale = 1.0f;
  float thresh_ratio = 0.995f, thresh_max = 1.0f;  // dynamic thresholding
  const float* model_out = nullptr;  // [Bm, H, W, Cm] (fp32 for the reference)
  float* model_in = nullptr;         // [Bm, H, W, Cin] or null
  float* slots[step_reg::kNumPersistent] = {};  // X and P1..P7, each [B, H, W, C]; null when unused
  const float* image = nullptr;      // [B, H, W, C] or null
  const float* init_noise = nullptr; // [B, H, W, C] or null
  const float* mask = nullptr;       // [B, H, W] or null
  // Z: Philox (noise == null) or this buffer [B, H, W, C] (the draw of this row).
  const float* noise = nullptr;
  uint64_t seed = 0;
  uint32_t sample_index_base = 0;
};

// Checks the row (registers, constants, masks) and the buffers it needs; throws Error(InvalidArgument).
void sampler_step_validate(const SamplerStepParams& p);
// Checks a row alone (operands in range, at most one Thresh, masks consistent); returns "" or the problem.
std::string step_row_problem(const StepRow& r);
// CPU reference: runs p.row over the batch.
void sampler_step_ref(const SamplerStepParams& p);
// torch.quantile(values, q) with linear interpolation as torch 1.13's CPU kernel (sorts `values` in place;
// the interpolation is torch's FMA lerp).
float step_quantile(float* values, int64_t n, float q);

}  // namespace diffrt
