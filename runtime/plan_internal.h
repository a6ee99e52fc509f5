// Shared state of the per-class planners (runtime/plan_*.cpp); not part of the public interface.
#pragma once
#include <string>
#include <vector>

#include "base/error.h"
#include "runtime/sampler_plan.h"
#include "runtime/step_program.h"

namespace diffrt::plan_detail {

using Val = RowBuilder::Val;

inline float f32(float v) {
  volatile float r = v;
  return r;
}

struct PlanCtx {
  const SchedulerConfig& c;
  const PlanRequest& req;
  const ScheduleTables& tables;
  const ClassSchedule& s;
  SamplerPlan& plan;
  int begin = 0;  // first timestep entry of the run
  int calls = 0;  // model calls of the run
  std::vector<bool> slot_used = std::vector<bool>(step_reg::kNumPersistent, false);

  int entry(int i) const { return begin + i; }
  // A free persistent slot (1..7); Error(Internal) when none is left.
  int alloc_slot();
  void free_slot(int s);
  // Finishes call i's row: the legacy-inpaint blend (if requested), the next model input, then stores it.
  void finish_row(RowBuilder& b, int i, uint8_t draws);
  // Marks row i as drawing noise from the generator and reading it (Z).
  void use_noise(RowBuilder& b, int i);
};

// VP quantities of a sigma (DPM-Solver, UniPC): alpha = 1/sqrt(s*s + 1), sigma_t = s*alpha, lambda = log a - log s.
struct Vp {
  float alpha, sigma, lambda;
};
Vp vp_of(float sigma);

[[noreturn]] inline void unsupported(const std::string& msg) { fail(ErrorCode::Unsupported, msg); }

void plan_ddpm_ddim(PlanCtx& x);
void plan_pndm(PlanCtx& x);
void plan_lcm(PlanCtx& x);
void plan_dpm(PlanCtx& x);
void plan_unipc(PlanCtx& x);
void plan_euler(PlanCtx& x);
void plan_euler_ancestral(PlanCtx& x);
void plan_heun(PlanCtx& x);

}  // namespace diffrt::plan_detail
