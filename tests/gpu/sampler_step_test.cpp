// sampler_step_cuda vs sampler_step_ref over whole loops of every scheduler class: the plan's rows (init row and
// one row per model call) run on both sides with a host fake model between calls (model_out = f(model_in), the
// model input read back in the model dtype), from a device row table indexed by the device counter, eagerly and as
// a captured graph replayed per call. Covers DDPM (all variance types), DDIM (eta, clipping), PNDM (PLMS, PRK),
// DPM-Solver(++) orders 1-3 / SDE / Karras / thresholding, Euler (v), Euler a, Heun (Karras, clipping), UniPC
// (bh1/bh2, order 3), LCM (thresholding); CFG in both orders; img2img with the legacy inpaint blend; extra model
// input channels; Philox and buffer noise; fp32/fp16/bf16 model storage.
// Expected: BIT-identical state slots and model inputs (same float32 op order, _rn intrinsics, shared Philox, FMA
// lerp in the quantile), except rows using Exp (DDPM learned_range with noise): relative 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/sampler_step/sampler_step.h"
#include "kernels/sampler_step/sampler_step_cuda.h"
#include "model/scheduler_config.h"
#include "runtime/cuda/cuda_kernels.h"
#include "runtime/sampler_plan.h"
#include "tests/gpu/gpu_test_util.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

struct Case {
  std::string config;  // scheduler config JSON
  int steps = 8;
  bool cfg = false, cond_first = false, img2img = false, blend = false, buffer_noise = false, variance = false;
  int extra = 0;  // extra model-input channels
  DType dtype = DType::F32;
};

// Host fake model over the dtype-rounded model input: out = 0.3*x + 0.01*t (+0.05 on cond rows; tanh(x) in the
// variance channels), rounded to the model dtype.
std::vector<float> fake_model(const std::vector<float>& in, int bm, int hw, int cin, int c, int cm, float t, int b,
                              bool cond_first, DType dt) {
  std::vector<float> out(size_t(bm) * hw * cm);
  for (int r = 0; r < bm; ++r) {
    const bool cond = bm > b && (cond_first ? r < b : r >= b);
    for (int p = 0; p < hw; ++p)
      for (int ch = 0; ch < cm; ++ch) {
        const float x = in[(size_t(r) * hw + p) * cin + (ch % c)];
        out[(size_t(r) * hw + p) * cm + ch] = ch < c ? 0.3f * x + 0.01f * t + (cond ? 0.05f : 0.0f) : std::tanh(x);
      }
  }
  test::round_to(dt, out);
  return out;
}

void check_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what, double rel) {
  test::expect_same_values(got, want, what, rel);
}

void run_case(const Case& cs, bool use_graph) {
  const SchedulerConfig cfg = scheduler_config_from_json(json::parse(cs.config), "case");
  SCOPED_TRACE(cs.config + " steps " + std::to_string(cs.steps) + (cs.cfg ? " cfg" : "") + (cs.cond_first ? " cond_first" : "") +
               (cs.blend ? " blend" : "") + (cs.buffer_noise ? " buffer_noise" : "") + " " + dtype_name(cs.dtype) +
               (use_graph ? " graph" : " eager"));
  PlanRequest pr;
  pr.steps = cs.steps;
  pr.model_predicts_variance = cs.variance;
  pr.img2img = cs.img2img;
  pr.strength = 0.7;
  pr.start_from_image = cs.img2img;
  pr.legacy_inpaint_blend = cs.blend;
  const SamplerPlan plan = make_sampler_plan(cfg, pr);
  const int B = 2, H = 3, W = 5, C = 3, hw = H * W, cin = C + cs.extra, cm = cs.variance ? 2 * C : C;
  const int bm = cs.cfg ? 2 * B : B;
  const size_t n = size_t(B) * hw * C;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  auto randv = [&](size_t k) { std::vector<float> v(k); for (float& x : v) x = nd(rng); return v; };
  const std::vector<float> noise0 = randv(n), image = randv(n);
  std::vector<float> mask(size_t(B) * hw);
  for (float& m : mask) m = (rng() & 1) ? 1.0f : 0.0f;
  std::vector<float> extra = randv(size_t(bm) * hw * size_t(std::max(cs.extra, 1)));
  test::round_to(cs.dtype, extra);
  std::vector<std::vector<float>> draws;
  for (int d = 0; d < plan.total_draws(); ++d) draws.push_back(randv(n));
  bool uses_exp = false;
  for (const StepRow& r : plan.rows)
    for (int q = 0; q < r.n_ins; ++q) uses_exp |= r.ins[q].op == StepOp::Exp;
  const double rel = uses_exp ? 1e-6 : 0.0;

  // ---- CPU reference
  std::vector<std::vector<float>> slots(size_t(plan.num_slots), std::vector<float>(n, 0.0f));
  std::vector<float> mi(size_t(bm) * hw * cin, 0.0f), mo;
  for (int r = 0; r < bm; ++r)
    for (int p = 0; p < hw; ++p)
      for (int e = 0; e < cs.extra; ++e) mi[(size_t(r) * hw + p) * cin + C + e] = extra[(size_t(r) * hw + p) * cs.extra + e];
  SamplerStepParams p;
  p.b = B; p.h = H; p.w = W; p.c = C; p.cm = cm; p.cin = cin;
  p.cfg = cs.cfg;
  p.cfg_order = cs.cond_first ? CfgOrder::CondFirst : CfgOrder::UncondFirst;
  p.guidance_scale = 3.0f;
  p.thresh_ratio = plan.thresh_ratio;
  p.thresh_max = plan.thresh_max;
  p.model_in = mi.data();
  for (int s = 0; s < plan.num_slots; ++s) p.slots[s] = slots[size_t(s)].data();
  p.image = image.data();
  p.init_noise = noise0.data();
  p.mask = mask.data();
  p.seed = 1234;
  p.sample_index_base = 3;
  p.row = &plan.init;
  sampler_step_ref(p);
  std::vector<std::vector<float>> cpu_mi;
  int drawn = 0;
  for (int i = 0; i < plan.calls(); ++i) {
    std::vector<float> rounded = mi;
    test::round_to(cs.dtype, rounded);
    cpu_mi.push_back(rounded);
    mo = fake_model(rounded, bm, hw, cin, C, cm, plan.model_timesteps[size_t(i)], B, cs.cond_first, cs.dtype);
    p.model_out = mo.data();
    p.row = &plan.rows[size_t(i)];
    p.noise = nullptr;
    if (cs.buffer_noise && plan.rows[size_t(i)].noise == StepNoise::Step) p.noise = draws[size_t(plan.rows[size_t(i)].noise_slot)].data();
    drawn += plan.draws[size_t(i)];
    sampler_step_ref(p);
  }

  // ---- GPU
  cudaStream_t s = nullptr;
  DeviceBuffer d_rows(plan.rows.size() * sizeof(StepRow)), d_init(sizeof(StepRow)), d_counter(256);
  DIFFRT_CUDA_CHECK(cudaMemcpy(d_rows.get(), plan.rows.data(), d_rows.bytes(), cudaMemcpyHostToDevice));
  DIFFRT_CUDA_CHECK(cudaMemcpy(d_init.get(), &plan.init, sizeof(StepRow), cudaMemcpyHostToDevice));
  DIFFRT_CUDA_CHECK(cudaMemset(d_counter.get(), 0, sizeof(int)));
  std::vector<DeviceBuffer> d_slots;
  for (int k = 0; k < plan.num_slots; ++k) {
    d_slots.emplace_back(n * 4);
    DIFFRT_CUDA_CHECK(cudaMemset(d_slots.back().get(), 0, n * 4));
  }
  auto up = [](const std::vector<float>& v) {
    DeviceBuffer d(v.size() * 4);
    DIFFRT_CUDA_CHECK(cudaMemcpy(d.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return d;
  };
  DeviceBuffer d_noise0 = up(noise0), d_image = up(image), d_mask = up(mask);
  std::vector<float> all_draws;
  for (const auto& d : draws) all_draws.insert(all_draws.end(), d.begin(), d.end());
  DeviceBuffer d_draws = up(all_draws.empty() ? std::vector<float>(1) : all_draws);
  const size_t es = dtype_size(cs.dtype);
  DeviceBuffer d_mi(size_t(bm) * hw * cin * es), d_mo(size_t(bm) * hw * cm * es);
  {
    std::vector<float> init_mi(size_t(bm) * hw * cin, 0.0f);
    for (int r = 0; r < bm; ++r)
      for (int q = 0; q < hw; ++q)
        for (int e = 0; e < cs.extra; ++e) init_mi[(size_t(r) * hw + q) * cin + C + e] = extra[(size_t(r) * hw + q) * cs.extra + e];
    std::vector<uint8_t> raw(init_mi.size() * es);
    from_f32(cs.dtype, init_mi.data(), raw.data(), init_mi.size());
    DIFFRT_CUDA_CHECK(cudaMemcpy(d_mi.get(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
  }
  bool any_thresh = false, any_noise = false;
  uint32_t mask_bits = plan.init.read_mask | plan.init.write_mask;
  for (const StepRow& r : plan.rows) {
    any_thresh |= r.thresh_at >= 0;
    any_noise |= r.noise == StepNoise::Step;
    mask_bits |= r.read_mask | r.write_mask;
  }
  DeviceBuffer d_ws(any_thresh ? sampler_step_workspace_bytes(B, H, W, C) : 0);
  SamplerStepDeviceParams dp;
  dp.base = p;
  dp.base.model_in = nullptr;
  dp.base.model_out = nullptr;
  for (int k = 0; k < plan.num_slots; ++k) dp.base.slots[k] = d_slots[size_t(k)].as<float>();
  dp.base.image = d_image.as<float>();
  dp.base.init_noise = d_noise0.as<float>();
  dp.base.mask = d_mask.as<float>();
  dp.model_dtype = cs.dtype;
  dp.model_in = d_mi.get();
  dp.model_out = d_mo.get();
  dp.table_mask = mask_bits;
  dp.any_noise = any_noise;
  dp.noise = cs.buffer_noise ? d_draws.as<float>() : nullptr;
  dp.noise_draw_stride = int64_t(n);
  dp.workspace = d_ws.get();
  dp.workspace_bytes = d_ws.bytes();
  {
    SamplerStepDeviceParams ip = dp;
    ip.rows = d_init.as<StepRow>();
    ip.counter = nullptr;
    ip.any_thresh = false;
    sampler_step_cuda(ip, s);
  }
  dp.rows = d_rows.as<StepRow>();
  dp.counter = d_counter.as<int>();
  dp.any_thresh = any_thresh;
  sampler_step_cuda_preload();
  cuda_rt::preload();
  cudaStream_t cs_stream;
  DIFFRT_CUDA_CHECK(cudaStreamCreate(&cs_stream));
  cudaGraphExec_t exec = nullptr;
  cudaGraph_t graph = nullptr;
  if (use_graph) {
    DIFFRT_CUDA_CHECK(cudaStreamBeginCapture(cs_stream, cudaStreamCaptureModeThreadLocal));
    sampler_step_cuda(dp, cs_stream);
    cuda_rt::increment_counter(dp.counter ? const_cast<int*>(dp.counter) : nullptr, cs_stream);
    DIFFRT_CUDA_CHECK(cudaStreamEndCapture(cs_stream, &graph));
    DIFFRT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  }
  for (int i = 0; i < plan.calls(); ++i) {
    std::vector<uint8_t> raw(size_t(bm) * hw * cin * es);
    DIFFRT_CUDA_CHECK(cudaMemcpy(raw.data(), d_mi.get(), raw.size(), cudaMemcpyDeviceToHost));
    std::vector<float> gmi(size_t(bm) * hw * cin);
    to_f32(cs.dtype, raw.data(), gmi.data(), gmi.size());
    check_same(gmi, cpu_mi[size_t(i)], "model input of call " + std::to_string(i), rel);
    const std::vector<float> gmo = fake_model(gmi, bm, hw, cin, C, cm, plan.model_timesteps[size_t(i)], B, cs.cond_first, cs.dtype);
    std::vector<uint8_t> mraw(gmo.size() * es);
    from_f32(cs.dtype, gmo.data(), mraw.data(), gmo.size());
    DIFFRT_CUDA_CHECK(cudaMemcpy(d_mo.get(), mraw.data(), mraw.size(), cudaMemcpyHostToDevice));
    if (use_graph) {
      DIFFRT_CUDA_CHECK(cudaGraphLaunch(exec, cs_stream));
    } else {
      sampler_step_cuda(dp, cs_stream);
      cuda_rt::increment_counter(const_cast<int*>(dp.counter), cs_stream);
    }
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(cs_stream));
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(cs_stream);
  for (int k = 0; k < plan.num_slots; ++k) {
    std::vector<float> g(n);
    DIFFRT_CUDA_CHECK(cudaMemcpy(g.data(), d_slots[size_t(k)].get(), n * 4, cudaMemcpyDeviceToHost));
    check_same(g, slots[size_t(k)], "slot " + std::to_string(k), rel);
  }
}

std::vector<Case> cases() {
  const std::string sd = R"("beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012)";
  auto cfg = [&](const std::string& cls, const std::string& more) {
    return "{\"_class_name\": \"" + cls + "\", " + sd + (more.empty() ? "" : ", " + more) + "}";
  };
  std::vector<Case> v;
  auto add = [&](const std::string& c, int steps, auto&& tweak) {
    Case k;
    k.config = c;
    k.steps = steps;
    tweak(k);
    v.push_back(k);
  };
  auto none = [](Case&) {};
  add(cfg("DDPMScheduler", R"("variance_type": "fixed_small_log", "clip_sample": true)"), 10, none);
  add(cfg("DDPMScheduler", R"("variance_type": "learned_range", "thresholding": true, "sample_max_value": 2.0)"), 10,
      [](Case& k) { k.variance = true; k.cfg = true; });
  add(cfg("DDPMScheduler", R"("variance_type": "learned", "prediction_type": "v_prediction")"), 10, [](Case& k) { k.variance = true; });
  add(cfg("DDIMScheduler", R"("clip_sample": true, "prediction_type": "sample")"), 10, [](Case& k) { k.cfg = true; k.cond_first = true; });
  add(cfg("PNDMScheduler", R"("skip_prk_steps": true, "steps_offset": 1)"), 10, [](Case& k) { k.cfg = true; });
  add(cfg("PNDMScheduler", R"("skip_prk_steps": false, "prediction_type": "v_prediction")"), 8, none);
  add(cfg("DPMSolverMultistepScheduler", R"("use_karras_sigmas": true)"), 12, [](Case& k) { k.cfg = true; k.dtype = DType::F16; });
  add(cfg("DPMSolverMultistepScheduler", R"("solver_order": 3, "thresholding": true, "prediction_type": "v_prediction")"), 12, none);
  add(cfg("DPMSolverMultistepScheduler", R"("algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": true)"), 9,
      [](Case& k) { k.buffer_noise = true; });
  add(cfg("DPMSolverMultistepScheduler", R"("algorithm_type": "sde-dpmsolver++", "solver_type": "heun")"), 9, none);
  add(cfg("DPMSolverMultistepScheduler", R"("algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", "solver_order": 3)"), 9, none);
  add(cfg("EulerDiscreteScheduler", R"("prediction_type": "v_prediction", "use_karras_sigmas": true)"), 10, [](Case& k) { k.dtype = DType::BF16; });
  add(cfg("EulerAncestralDiscreteScheduler", ""), 10, [](Case& k) { k.img2img = true; k.blend = true; k.cfg = true; });
  add(cfg("EulerAncestralDiscreteScheduler", ""), 10, [](Case& k) { k.buffer_noise = true; k.extra = 5; });
  add(cfg("HeunDiscreteScheduler", R"("use_karras_sigmas": true, "clip_sample": true)"), 7, [](Case& k) { k.cfg = true; });
  add(cfg("HeunDiscreteScheduler", ""), 7, [](Case& k) { k.img2img = true; k.blend = true; });
  add(cfg("UniPCMultistepScheduler", R"("solver_order": 3, "solver_type": "bh1")"), 10, none);
  add(cfg("UniPCMultistepScheduler", R"("predict_x0": false, "use_karras_sigmas": true)"), 10, [](Case& k) { k.dtype = DType::F16; });
  add(cfg("UniPCMultistepScheduler", R"("thresholding": true)"), 10, [](Case& k) { k.img2img = true; });
  add(cfg("LCMScheduler", R"("thresholding": true)"), 6, [](Case& k) { k.cfg = true; });
  add(cfg("LCMScheduler", R"("prediction_type": "v_prediction", "clip_sample": true)"), 4, [](Case& k) { k.buffer_noise = true; k.img2img = true; k.blend = true; });
  return v;
}

}  // namespace

TEST(SamplerStepCuda, EveryClassMatchesTheReferenceOverWholeLoops) {
  DIFFRT_SKIP_WITHOUT_GPU();
  int n = 0;
  for (const Case& c : cases()) {
    run_case(c, false);
    ++n;
  }
  EXPECT_EQ(n, 21);
}

TEST(SamplerStepCuda, GraphReplayOfTheTableEqualsTheReference) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (const Case& c : cases()) run_case(c, true);
}
