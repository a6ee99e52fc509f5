// Builds one StepRow (kernels/sampler_step/sampler_step.h) from code that reads like the diffusers step it
// reproduces: every call appends one float32 operation in evaluation order, temporaries are virtual until
// finish() allocates registers by liveness. Planners (runtime/plan_*.cpp) write e.g.
//     Val x0 = b.div(b.sub(b.x(), b.mul(b.k(s), b.m())), b.k(a));    // (x - s*m) / a
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/sampler_step/sampler_step.h"

namespace diffrt {

class RowBuilder {
 public:
  // An operand: a physical register (< 32), a constant (32 + index) or a virtual temporary (>= 1000).
  struct Val {
    uint16_t id = 0xffff;
  };

  Val x() const { return Val{step_reg::kX}; }
  Val slot(int s) const;  // persistent slot 1..7
  Val m() { return Val{step_reg::kM}; }
  Val v() { return Val{step_reg::kV}; }
  Val z();  // marks the row as reading step noise
  Val img() { return Val{step_reg::kImg}; }
  Val noi() { return Val{step_reg::kNoi}; }
  Val mask() { return Val{step_reg::kMask}; }
  Val k(float c);  // a constant (deduplicated by bit pattern)

  Val add(Val a, Val b) { return emit(StepOp::Add, a, b); }
  Val sub(Val a, Val b) { return emit(StepOp::Sub, a, b); }
  Val mul(Val a, Val b) { return emit(StepOp::Mul, a, b); }
  Val div(Val a, Val b) { return emit(StepOp::Div, a, b); }
  Val max(Val a, Val b) { return emit(StepOp::Max, a, b); }
  Val min(Val a, Val b) { return emit(StepOp::Min, a, b); }
  Val sqrt(Val a) { return emit(StepOp::Sqrt, a, Val{step_reg::kNone}); }
  Val exp(Val a) { return emit(StepOp::Exp, a, Val{step_reg::kNone}); }
  Val thresh(Val a);  // dynamic thresholding (at most once per row)
  // torch.clamp(a, -r, r) = min(max(a, -r), r).
  Val clamp(Val a, float r) { return min(max(a, k(-r)), k(r)); }

  // Writes v into persistent register r (X or a slot); later reads of r see the new value.
  void set(Val r, Val v);
  // The register whose value becomes the next model input.
  void set_model_input(Val v);
  void set_noise(uint32_t key, int32_t slot);

  // Register allocation, masks, validation (Error(Internal) when a program does not fit).
  StepRow finish() const;
  int instructions() const { return int(ins_.size()); }

 private:
  struct Ins {
    StepOp op;
    uint16_t dst, a, b;
  };
  Val emit(StepOp op, Val a, Val b);
  std::vector<Ins> ins_;
  std::vector<float> consts_;
  uint16_t next_temp_ = 1000;
  uint16_t in_ = step_reg::kNone;
  bool reads_z_ = false, has_noise_ = false;
  uint32_t noise_key_ = 0;
  int32_t noise_slot_ = -1;
};

}  // namespace diffrt
