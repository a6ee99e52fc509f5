// Planners of the multistep solvers: DPMSolverMultistepScheduler (dpmsolver++, sde-dpmsolver++, dpmsolver,
// sde-dpmsolver; orders 1-3; midpoint / heun) and UniPCMultistepScheduler (bh1 / bh2, predictor + corrector),
// diffusers 0.27.2 step() for step() (tests/fixtures/samplers/README.md §D5, §D9). The model-output history lives
// in persistent slots; each row emits the update in torch's operation order with host float32 scalars.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "runtime/plan_internal.h"
#include "runtime/sampler_math.h"

namespace diffrt::plan_detail {
namespace {

using K = SchedulerClass;
using smath::exp_f;
using smath::expm1_f;

// convert_model_output at sigma: the data prediction x0 (++ / predict_x0) or the noise prediction eps.
Val convert(RowBuilder& b, const SchedulerConfig& c, float sigma, bool data_prediction, bool threshold_eps_path) {
  const Vp v = vp_of(sigma);
  if (data_prediction) {
    Val x0;
    switch (c.prediction_type) {
      case PredictionType::Epsilon: x0 = b.div(b.sub(b.x(), b.mul(b.k(v.sigma), b.m())), b.k(v.alpha)); break;
      case PredictionType::Sample: x0 = b.m(); break;
      case PredictionType::VPrediction: x0 = b.sub(b.mul(b.k(v.alpha), b.x()), b.mul(b.k(v.sigma), b.m())); break;
    }
    if (c.thresholding) x0 = b.thresh(x0);
    return x0;
  }
  Val eps;
  switch (c.prediction_type) {
    case PredictionType::Epsilon: eps = b.m(); break;
    case PredictionType::Sample: eps = b.div(b.sub(b.x(), b.mul(b.k(v.alpha), b.m())), b.k(v.sigma)); break;
    case PredictionType::VPrediction: eps = b.add(b.mul(b.k(v.alpha), b.m()), b.mul(b.k(v.sigma), b.x())); break;
  }
  if (c.thresholding && threshold_eps_path) {
    // DPM-Solver (non-++): x0 = threshold((x - s*eps)/a); eps = (x - a*x0)/s.
    Val x0 = b.thresh(b.div(b.sub(b.x(), b.mul(b.k(v.sigma), eps)), b.k(v.alpha)));
    eps = b.div(b.sub(b.x(), b.mul(b.k(v.alpha), x0)), b.k(v.sigma));
  }
  return eps;
}

// Keeps the last `order` model outputs in slots; `outs[j]` is -1 while diffusers' list holds None.
struct History {
  std::vector<int> outs;
  // model_outputs = model_outputs[1:] + [new]: the evicted slot (or a fresh one) receives the new value.
  int push(PlanCtx& x) {
    int slot = outs.front();
    outs.erase(outs.begin());
    if (slot < 0) slot = x.alloc_slot();
    outs.push_back(slot);
    return slot;
  }
  int back(int k) const { return outs[outs.size() - 1 - size_t(k)]; }  // k = 0: the newest
};

}  // namespace

void plan_dpm(PlanCtx& x) {
  const SchedulerConfig& c = x.c;
  const std::vector<float>& sig = x.s.sigmas;
  const int n = int(x.s.timesteps.size());
  const int order = c.solver_order;
  const bool pp = c.algorithm_type == DpmAlgorithm::DpmSolverPP || c.algorithm_type == DpmAlgorithm::SdeDpmSolverPP;
  const bool sde = c.algorithm_type == DpmAlgorithm::SdeDpmSolverPP || c.algorithm_type == DpmAlgorithm::SdeDpmSolver;
  const bool heun = c.solver_type == SolverType::Heun;
  History h{std::vector<int>(size_t(order), -1)};
  int lower_order_nums = 0;
  for (int i = 0; i < x.calls; ++i) {
    const int si = x.entry(i);
    const bool lower_final = si == n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) ||
                                             c.final_sigmas_type == FinalSigmas::Zero);
    const bool lower_second = si == n - 2 && c.lower_order_final && n < 15;
    RowBuilder b;
    const Val conv = convert(b, c, sig[size_t(si)], pp, true);
    const int slot = h.push(x);
    b.set(b.slot(slot), conv);
    Val z;
    if (sde) {
      x.use_noise(b, i);
      z = b.z();
    }
    const Vp t = vp_of(sig[size_t(si + 1)]), s0 = vp_of(sig[size_t(si)]);
    const float hh = f32(t.lambda - s0.lambda);
    const Val m0 = b.slot(h.back(0));
    Val out;
    int this_order = 3;
    if (order == 1 || lower_order_nums < 1 || lower_final) this_order = 1;
    else if (order == 2 || lower_order_nums < 2 || lower_second) this_order = 2;
    if (this_order == 1) {
      switch (c.algorithm_type) {
        case DpmAlgorithm::DpmSolverPP:
          out = b.sub(b.mul(b.k(f32(t.sigma / s0.sigma)), b.x()),
                      b.mul(b.k(f32(t.alpha * f32(exp_f(-hh) - 1.0f))), m0));
          break;
        case DpmAlgorithm::DpmSolver:
          out = b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), b.x()),
                      b.mul(b.k(f32(t.sigma * f32(exp_f(hh) - 1.0f))), m0));
          break;
        case DpmAlgorithm::SdeDpmSolverPP: {
          const float e2 = exp_f(f32(-2.0f * hh));
          const Val a = b.mul(b.k(f32(f32(t.sigma / s0.sigma) * exp_f(-hh))), b.x());
          const Val bb = b.mul(b.k(f32(t.alpha * f32(1.0f - e2))), m0);
          out = b.add(b.add(a, bb), b.mul(b.k(f32(t.sigma * std::sqrt(f32(1.0f - e2)))), z));
          break;
        }
        case DpmAlgorithm::SdeDpmSolver: {
          const float em = f32(exp_f(hh) - 1.0f);
          const Val a = b.mul(b.k(f32(t.alpha / s0.alpha)), b.x());
          const Val bb = b.mul(b.k(f32(2.0f * f32(t.sigma * em))), m0);
          out = b.add(b.sub(a, bb), b.mul(b.k(f32(t.sigma * std::sqrt(f32(exp_f(f32(2.0f * hh)) - 1.0f)))), z));
          break;
        }
      }
    } else if (this_order == 2) {
      const Vp s1 = vp_of(sig[size_t(si - 1)]);
      const float h0 = f32(s0.lambda - s1.lambda);
      const float r0 = f32(h0 / hh);
      const Val m1 = b.slot(h.back(1));
      const Val d1 = b.mul(b.k(f32(1.0f / r0)), b.sub(m0, m1));
      switch (c.algorithm_type) {
        case DpmAlgorithm::DpmSolverPP: {
          const float em = f32(exp_f(-hh) - 1.0f);
          const float B = f32(t.alpha * em);
          const Val a = b.sub(b.mul(b.k(f32(t.sigma / s0.sigma)), b.x()), b.mul(b.k(B), m0));
          if (!heun) out = b.sub(a, b.mul(b.k(f32(0.5f * B)), d1));
          else out = b.add(a, b.mul(b.k(f32(t.alpha * f32(f32(em / hh) + 1.0f))), d1));
          break;
        }
        case DpmAlgorithm::DpmSolver: {
          const float em = f32(exp_f(hh) - 1.0f);
          const float B = f32(t.sigma * em);
          const Val a = b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), b.x()), b.mul(b.k(B), m0));
          if (!heun) out = b.sub(a, b.mul(b.k(f32(0.5f * B)), d1));
          else out = b.sub(a, b.mul(b.k(f32(t.sigma * f32(f32(em / hh) - 1.0f))), d1));
          break;
        }
        case DpmAlgorithm::SdeDpmSolverPP: {
          const float e2 = exp_f(f32(-2.0f * hh));
          const float B = f32(t.alpha * f32(1.0f - e2));
          const float C = f32(t.sigma * std::sqrt(f32(1.0f - e2)));
          const Val a = b.add(b.mul(b.k(f32(f32(t.sigma / s0.sigma) * exp_f(-hh))), b.x()), b.mul(b.k(B), m0));
          Val a2;
          if (!heun) a2 = b.add(a, b.mul(b.k(f32(0.5f * B)), d1));
          else a2 = b.add(a, b.mul(b.k(f32(t.alpha * f32(f32(f32(1.0f - e2) / f32(-2.0f * hh)) + 1.0f))), d1));
          out = b.add(a2, b.mul(b.k(C), z));
          break;
        }
        case DpmAlgorithm::SdeDpmSolver: {
          const float em = f32(exp_f(hh) - 1.0f);
          const float B = f32(t.sigma * em);
          const float C = f32(t.sigma * std::sqrt(f32(exp_f(f32(2.0f * hh)) - 1.0f)));
          const Val a = b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), b.x()), b.mul(b.k(f32(2.0f * B)), m0));
          Val a2;
          if (!heun) a2 = b.sub(a, b.mul(b.k(B), d1));
          else a2 = b.sub(a, b.mul(b.k(f32(2.0f * f32(t.sigma * f32(f32(em / hh) - 1.0f)))), d1));
          out = b.add(a2, b.mul(b.k(C), z));
          break;
        }
      }
    } else {
      if (sde)
        unsupported(std::string("DPMSolverMultistepScheduler: ") + to_string(c.algorithm_type) +
                    " with solver_order 3 reaches a third-order step at step " + std::to_string(si) +
                    ", which diffusers 0.27.2 cannot run (UnboundLocalError); use solver_order 2");
      const Vp s1 = vp_of(sig[size_t(si - 1)]), s2 = vp_of(sig[size_t(si - 2)]);
      const float h0 = f32(s0.lambda - s1.lambda), h1 = f32(s1.lambda - s2.lambda);
      const float r0 = f32(h0 / hh), r1 = f32(h1 / hh);
      const Val m1 = b.slot(h.back(1)), m2 = b.slot(h.back(2));
      const Val d10 = b.mul(b.k(f32(1.0f / r0)), b.sub(m0, m1));
      const Val d11 = b.mul(b.k(f32(1.0f / r1)), b.sub(m1, m2));
      const float rs = f32(r0 + r1);
      const Val diff = b.sub(d10, d11);
      const Val d1 = b.add(d10, b.mul(b.k(f32(r0 / rs)), diff));
      const Val d2 = b.mul(b.k(f32(1.0f / rs)), diff);
      if (pp) {
        const float em = f32(exp_f(-hh) - 1.0f);
        const Val a = b.sub(b.mul(b.k(f32(t.sigma / s0.sigma)), b.x()), b.mul(b.k(f32(t.alpha * em)), m0));
        const Val a2 = b.add(a, b.mul(b.k(f32(t.alpha * f32(f32(em / hh) + 1.0f))), d1));
        out = b.sub(a2, b.mul(b.k(f32(t.alpha * f32(f32(f32(em + hh) / f32(hh * hh)) - 0.5f))), d2));
      } else {
        const float em = f32(exp_f(hh) - 1.0f);
        const Val a = b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), b.x()), b.mul(b.k(f32(t.sigma * em)), m0));
        const Val a2 = b.sub(a, b.mul(b.k(f32(t.sigma * f32(f32(em / hh) - 1.0f))), d1));
        out = b.sub(a2, b.mul(b.k(f32(t.sigma * f32(f32(f32(em - hh) / f32(hh * hh)) - 0.5f))), d2));
      }
    }
    b.set(b.x(), out);
    lower_order_nums = std::min(lower_order_nums + 1, order);
    x.finish_row(b, i, sde ? 1 : 0);
  }
}

namespace {

// UniPC's R (rows rks^k) and b for order K, and h_phi_1, B_h (bh1 / bh2).
struct UniPcCoeffs {
  std::vector<float> R, bvec;  // R row-major K x K
  float h_phi_1 = 0, B_h = 0;
};

UniPcCoeffs unipc_coeffs(const std::vector<float>& rks, float hh, bool bh1) {
  const int K = int(rks.size());
  UniPcCoeffs u;
  u.h_phi_1 = expm1_f(hh);
  float h_phi_k = f32(f32(u.h_phi_1 / hh) - 1.0f);
  u.B_h = bh1 ? hh : expm1_f(hh);
  int64_t fac = 1;
  for (int k = 1; k <= K; ++k) {
    for (int j = 0; j < K; ++j) {
      const float r = rks[size_t(j)];
      u.R.push_back(k == 1 ? 1.0f : (k == 2 ? r : f32(r * r)));  // torch.pow(rks, k - 1)
    }
    u.bvec.push_back(f32(f32(h_phi_k * float(fac)) / u.B_h));
    fac *= k + 1;
    h_phi_k = f32(f32(h_phi_k / hh) - float(1.0 / double(fac)));
  }
  return u;
}

}  // namespace

void plan_unipc(PlanCtx& x) {
  const SchedulerConfig& c = x.c;
  const std::vector<float>& sig = x.s.sigmas;
  const int n = int(x.s.timesteps.size());
  const int order = c.solver_order;
  const bool px0 = c.predict_x0;
  const bool bh1 = c.solver_type == SolverType::Bh1;
  History hist{std::vector<int>(size_t(order), -1)};
  int last_sample = -1;
  int lower_order_nums = 0, prev_order = 0;
  for (int i = 0; i < x.calls; ++i) {
    const int si = x.entry(i);
    RowBuilder b;
    const bool disabled = std::find(c.disable_corrector.begin(), c.disable_corrector.end(), si - 1) != c.disable_corrector.end();
    const bool use_corrector = si > 0 && !disabled && last_sample >= 0;
    const Val mc = convert(b, c, sig[size_t(si)], px0, false);
    if (use_corrector) {
      // multistep_uni_c_bh_update(mc, last_sample, x, order = previous this_order)
      const int K = prev_order;
      const Vp t = vp_of(sig[size_t(si)]), s0 = vp_of(sig[size_t(si - 1)]);
      const float h = f32(t.lambda - s0.lambda);
      const Val m0 = b.slot(hist.back(0));
      std::vector<float> rks;
      std::vector<Val> d1s;
      for (int k = 1; k < K; ++k) {
        const Vp sk = vp_of(sig[size_t(si - (k + 1))]);
        const float rk = f32(f32(sk.lambda - s0.lambda) / h);
        rks.push_back(rk);
        d1s.push_back(b.div(b.sub(b.slot(hist.back(k)), m0), b.k(rk)));
      }
      rks.push_back(1.0f);
      const float hh = px0 ? -h : h;
      const UniPcCoeffs u = unipc_coeffs(rks, hh, bh1);
      std::vector<float> rhos = K == 1 ? std::vector<float>{0.5f} : smath::lapack_solve(u.R, u.bvec, K, true);
      const Val last = b.slot(last_sample);
      const Val xt_ = px0 ? b.sub(b.mul(b.k(f32(t.sigma / s0.sigma)), last), b.mul(b.k(f32(t.alpha * u.h_phi_1)), m0))
                          : b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), last), b.mul(b.k(f32(t.sigma * u.h_phi_1)), m0));
      const Val d1t = b.sub(mc, m0);
      Val inner = b.mul(b.k(rhos.back()), d1t);
      if (K > 1) {
        Val corr = b.mul(b.k(rhos[0]), d1s[0]);
        for (int k = 1; k < K - 1; ++k) corr = b.add(corr, b.mul(b.k(rhos[size_t(k)]), d1s[size_t(k)]));
        inner = b.add(corr, inner);
      }
      const float coef = f32((px0 ? t.alpha : t.sigma) * u.B_h);
      b.set(b.x(), b.sub(xt_, b.mul(b.k(coef), inner)));
    }
    const int slot = hist.push(x);
    b.set(b.slot(slot), mc);
    const int ord = c.lower_order_final ? std::min(order, n - si) : order;
    const int K = std::min(ord, lower_order_nums + 1);
    if (last_sample < 0) last_sample = x.alloc_slot();
    b.set(b.slot(last_sample), b.x());
    // multistep_uni_p_bh_update(x, order = K)
    {
      const Vp t = vp_of(sig[size_t(si + 1)]), s0 = vp_of(sig[size_t(si)]);
      const float h = f32(t.lambda - s0.lambda);
      const Val m0 = b.slot(hist.back(0));
      std::vector<float> rks;
      std::vector<Val> d1s;
      for (int k = 1; k < K; ++k) {
        const Vp sk = vp_of(sig[size_t(si - k)]);
        const float rk = f32(f32(sk.lambda - s0.lambda) / h);
        rks.push_back(rk);
        d1s.push_back(b.div(b.sub(b.slot(hist.back(k)), m0), b.k(rk)));
      }
      rks.push_back(1.0f);
      const float hh = px0 ? -h : h;
      const UniPcCoeffs u = unipc_coeffs(rks, hh, bh1);
      const Val xt_ = px0 ? b.sub(b.mul(b.k(f32(t.sigma / s0.sigma)), b.x()), b.mul(b.k(f32(t.alpha * u.h_phi_1)), m0))
                          : b.sub(b.mul(b.k(f32(t.alpha / s0.alpha)), b.x()), b.mul(b.k(f32(t.sigma * u.h_phi_1)), m0));
      Val out = xt_;
      if (K >= 2) {
        std::vector<float> rhos;
        if (K == 2) {
          rhos = {0.5f};
        } else {
          // solve(R[:-1, :-1], b[:-1]): the non-contiguous slice, factored directly.
          std::vector<float> Rs, bs;
          for (int r = 0; r < K - 1; ++r) {
            for (int cc = 0; cc < K - 1; ++cc) Rs.push_back(u.R[size_t(r * K + cc)]);
            bs.push_back(u.bvec[size_t(r)]);
          }
          rhos = smath::lapack_solve(Rs, bs, K - 1, false);
        }
        Val res = b.mul(b.k(rhos[0]), d1s[0]);
        for (int k = 1; k < K - 1; ++k) res = b.add(res, b.mul(b.k(rhos[size_t(k)]), d1s[size_t(k)]));
        out = b.sub(xt_, b.mul(b.k(f32((px0 ? t.alpha : t.sigma) * u.B_h)), res));
      }
      b.set(b.x(), out);
    }
    prev_order = K;
    lower_order_nums = std::min(lower_order_nums + 1, order);
    x.finish_row(b, i, 0);
  }
}

}  // namespace diffrt::plan_detail
