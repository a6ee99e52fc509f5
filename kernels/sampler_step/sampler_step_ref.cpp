// CPU reference of the generic fused sampler step (contract and layouts in sampler_step.h): a per-element
// interpreter of the row's float32 program, every operation rounded separately in the written order (GCC on
// x86-64 without -mfma never contracts; std::fma is used only where torch itself fuses: quantile's lerp).
// Tested by tests/sampler_loop_test.cpp (fixture loops of every scheduler class) and tests/sampler_step_test.cpp.
#include "kernels/sampler_step/sampler_step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/common/philox.h"

namespace diffrt {
namespace {

using namespace step_reg;

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, "sampler_step: " + msg); }

inline float apply(StepOp op, float a, float b, float s) {
  switch (op) {
    case StepOp::Mov: return a;
    case StepOp::Add: return a + b;
    case StepOp::Sub: return a - b;
    case StepOp::Mul: return a * b;
    case StepOp::Div: return a / b;
    case StepOp::Max: return std::max(a, b);
    case StepOp::Min: return std::min(a, b);
    case StepOp::Sqrt: return std::sqrt(a);
    case StepOp::Exp: return std::exp(a);
    case StepOp::Thresh: return std::min(std::max(a, -s), s) / s;
  }
  return a;
}

struct Runner {
  const SamplerStepParams& p;
  const StepRow& r;
  int64_t hw, n_per;
  int bm_rows;

  // Loads the inputs of element (n, i, ch) into reg.
  void load(float* reg, int n, int64_t i, int ch) const {
    const int64_t j = i * p.c + ch;
    const int64_t g = int64_t(n) * n_per + j;
    const uint32_t m = r.read_mask;
    for (int s = 0; s < kNumPersistent; ++s)
      if (m & (1u << s)) reg[s] = p.slots[s][g];
    if (m & ((1u << kM) | (1u << kV))) {
      const int64_t row_len = hw * p.cm;
      const int cond_row = p.cfg ? (p.cfg_order == CfgOrder::UncondFirst ? p.b + n : n) : n;
      const int uncond_row = p.cfg_order == CfgOrder::UncondFirst ? n : p.b + n;
      float cv = p.model_out[int64_t(cond_row) * row_len + i * p.cm + ch];
      if (p.cfg) {
        const float u = p.model_out[int64_t(uncond_row) * row_len + i * p.cm + ch];
        cv = u + p.guidance_scale * (cv - u);
      }
      reg[kM] = cv;
      if (m & (1u << kV)) reg[kV] = p.model_out[int64_t(cond_row) * row_len + i * p.cm + p.c + ch];
    }
    if (m & (1u << kZ)) {
      reg[kZ] = p.noise ? p.noise[g]
                        : philox::normal_at(p.seed, p.sample_index_base + uint32_t(n), r.noise_key, philox::kTagStep,
                                            uint32_t(int64_t(ch) * hw + i));
    }
    if (m & (1u << kImg)) reg[kImg] = p.image[g];
    if (m & (1u << kNoi)) reg[kNoi] = p.init_noise[g];
    if (m & (1u << kMask)) reg[kMask] = p.mask[int64_t(n) * hw + i];
  }

  // Runs instructions [0, end) on reg.
  void run(float* reg, int end, float s) const {
    for (int q = 0; q < end; ++q) {
      const StepInstr& in = r.ins[q];
      const float a = in.a >= kConst ? r.k[in.a - kConst] : reg[in.a];
      const float b = in.b == kNone ? 0.0f : (in.b >= kConst ? r.k[in.b - kConst] : reg[in.b]);
      reg[in.dst] = apply(in.op, a, b, s);
    }
  }
};

}  // namespace

float step_quantile(float* values, int64_t n, float q) {
  if (n <= 0) bad("quantile of an empty row");
  std::sort(values, values + n);
  // torch 1.13: rank = q * (n - 1) in float32; lerp between floor and ceil; the AVX2 build's lerp is an FMA.
  const float rank = q * float(n - 1);
  int64_t below = int64_t(std::floor(rank)), above = int64_t(std::ceil(rank));
  below = std::min<int64_t>(std::max<int64_t>(below, 0), n - 1);
  above = std::min<int64_t>(std::max<int64_t>(above, 0), n - 1);
  const float w = rank - float(below);
  const float a = values[below], b = values[above];
  const float d = b - a;
  return std::fabs(w) < 0.5f ? std::fma(w, d, a) : std::fma(-d, 1.0f - w, b);
}

std::string step_row_problem(const StepRow& r) {
  if (r.n_ins > kMaxStepInstr) return "too many instructions";
  if (r.n_const > kMaxStepConst) return "too many constants";
  uint32_t written = 0, read = 0;
  int thresh = -1;
  auto operand_ok = [&](uint8_t o, bool optional) {
    if (o == kNone) return optional;
    if (o >= kConst) return int(o - kConst) < r.n_const;
    return int(o) < kNumRegs;
  };
  for (int q = 0; q < r.n_ins; ++q) {
    const StepInstr& in = r.ins[q];
    const bool unary = in.op == StepOp::Mov || in.op == StepOp::Sqrt || in.op == StepOp::Exp || in.op == StepOp::Thresh;
    if (!operand_ok(in.a, false) || !operand_ok(in.b, unary)) return "operand out of range at " + std::to_string(q);
    if (!unary && in.b == kNone) return "missing operand at " + std::to_string(q);
    if (in.dst >= kNumRegs || in.dst == kM || in.dst == kV || in.dst == kZ || in.dst == kImg || in.dst == kNoi ||
        in.dst == kMask)
      return "bad destination at " + std::to_string(q);
    for (uint8_t o : {in.a, in.b})
      if (o < kNumRegs && !(written & (1u << o))) read |= 1u << o;
    written |= 1u << in.dst;
    if (in.op == StepOp::Thresh) {
      if (thresh >= 0) return "more than one Thresh";
      thresh = q;
    }
  }
  if (thresh != r.thresh_at) return "thresh_at does not match the program";
  if (r.in_reg != kNone) {
    if (r.in_reg >= kNumRegs) return "in_reg out of range";
    if (!(written & (1u << r.in_reg))) read |= 1u << r.in_reg;
  }
  if (read != r.read_mask) return "read_mask does not match the program";
  if (written != r.write_mask) return "write_mask does not match the program";
  for (int t = kT0; t < kNumRegs; ++t)
    if (read & (1u << t)) return "temporary read before written";
  return "";
}

void sampler_step_validate(const SamplerStepParams& p) {
  if (!p.row) bad("row is null");
  const StepRow& r = *p.row;
  const std::string why = step_row_problem(r);
  if (!why.empty()) bad("bad row: " + why);
  if (p.b <= 0 || p.h <= 0 || p.w <= 0 || p.c <= 0)
    bad("shape b=" + std::to_string(p.b) + " h=" + std::to_string(p.h) + " w=" + std::to_string(p.w) +
        " c=" + std::to_string(p.c) + " must be positive");
  if (p.cm < p.c) bad("cm=" + std::to_string(p.cm) + " must be >= c=" + std::to_string(p.c));
  if (p.cin != 0 && p.cin < p.c) bad("cin=" + std::to_string(p.cin) + " must be >= c=" + std::to_string(p.c));
  if (uint64_t(p.h) * p.w * std::max(std::max(p.c, p.cm), p.cin) > 0xffffffffull) bad("h*w*channels exceeds 2^32");
  const uint32_t used = r.read_mask | r.write_mask;
  for (int s = 0; s < kNumPersistent; ++s)
    if ((used & (1u << s)) && !p.slots[s]) bad("slot " + std::to_string(s) + " is used but null");
  if ((r.read_mask & ((1u << kM) | (1u << kV))) && !p.model_out) bad("model_out is null");
  if ((r.read_mask & (1u << kV)) && p.cm < 2 * p.c) bad("the row reads the variance channels but cm < 2c");
  if ((r.read_mask & (1u << kImg)) && !p.image) bad("image is null");
  if ((r.read_mask & (1u << kNoi)) && !p.init_noise) bad("init_noise is null");
  if ((r.read_mask & (1u << kMask)) && !p.mask) bad("mask is null");
  if ((r.read_mask & (1u << kZ)) && r.noise != StepNoise::Step) bad("the row reads Z but has no noise");
  if (r.in_reg != kNone && !p.model_in) bad("model_in is null");
  if (!std::isfinite(p.guidance_scale)) bad("guidance_scale is not finite");
  if (r.thresh_at >= 0 && !(p.thresh_ratio > 0.f && p.thresh_ratio <= 1.f)) bad("thresh_ratio not in (0, 1]");
}

void sampler_step_ref(const SamplerStepParams& p) {
  sampler_step_validate(p);
  const StepRow& r = *p.row;
  Runner run{p, r, int64_t(p.h) * p.w, int64_t(p.h) * p.w * p.c, p.cfg ? 2 * p.b : p.b};
  const int cin = p.cin ? p.cin : p.c;
  std::vector<float> absv;
  float reg[kNumRegs];
  for (int n = 0; n < p.b; ++n) {
    float s = 1.0f;
    if (r.thresh_at >= 0) {
      absv.resize(size_t(run.n_per));
      const uint8_t src = r.ins[r.thresh_at].a;
      for (int64_t i = 0; i < run.hw; ++i)
        for (int ch = 0; ch < p.c; ++ch) {
          std::fill(reg, reg + kNumRegs, 0.0f);
          run.load(reg, n, i, ch);
          run.run(reg, r.thresh_at, 1.0f);
          const float v = src >= kConst ? r.k[src - kConst] : reg[src];
          absv[size_t(i * p.c + ch)] = std::fabs(v);
        }
      s = step_quantile(absv.data(), run.n_per, p.thresh_ratio);
      s = std::min(std::max(s, 1.0f), p.thresh_max);  // torch.clamp(s, min=1, max=sample_max_value)
    }
    for (int64_t i = 0; i < run.hw; ++i)
      for (int ch = 0; ch < p.c; ++ch) {
        std::fill(reg, reg + kNumRegs, 0.0f);
        run.load(reg, n, i, ch);
        run.run(reg, r.n_ins, s);
        const int64_t g = int64_t(n) * run.n_per + i * p.c + ch;
        if (r.in_reg != kNone) {
          const float v = reg[r.in_reg];
          p.model_in[(int64_t(n) * run.hw + i) * cin + ch] = v;
          if (p.cfg) p.model_in[(int64_t(p.b + n) * run.hw + i) * cin + ch] = v;
        }
        for (int q = 0; q < kNumPersistent; ++q)
          if (r.write_mask & (1u << q)) p.slots[q][g] = reg[q];
      }
  }
}

}  // namespace diffrt
