// scheduler_step_cuda / scheduler_step_cuda_ex vs scheduler_step_ref: every sampler, prediction and variance
// type, CFG, DDIM eta and use_clipped_model_output, clipping and dynamic thresholding, Philox and buffer noise,
// fp32/fp16/bf16 model output, and the device coefficient table + step counter of CUDA-graph replay.
// Expected: BIT-identical x, pred_x0 and model_in (the kernel uses the reference's float32 op order with _rn
// intrinsics, and the shared Philox code), except learned_range with noise, where CUDA expf may differ from the
// C library's by 2 ulp in sigma: there the bound is a relative 1e-6 per element.
// Shapes are odd (H*W not a multiple of 4) so Philox groups straddle channels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "kernels/scheduler_step/scheduler_step.h"
#include "kernels/scheduler_step/scheduler_step_cuda.h"
#include "runtime/schedule.h"
#include "tests/gpu/gpu_test_util.h"

using namespace diffrt;

namespace {

struct Case {
  SamplerKind kind = SamplerKind::Ddpm;
  PredictionType pred = PredictionType::Epsilon;
  VarianceType var = VarianceType::FixedSmall;
  bool cfg = false, clip = true, thresholding = false, clipped_out = false, torch_noise = false;
  float eta = 0.f;
  int b = 2, h = 5, w = 7, c = 3;
  DType dtype = DType::F32;
  std::string name() const {
    return std::string(to_string(kind)) + "/" + to_string(pred) + "/" + to_string(var) + (cfg ? "/cfg" : "") +
           (clip ? "/clip" : "") + (thresholding ? "/thresh" : "") + (clipped_out ? "/clipped_out" : "") +
           (torch_noise ? "/buffer_noise" : "") + "/eta=" + std::to_string(eta) + "/" + dtype_name(dtype);
  }
};

bool learned(VarianceType v) { return v == VarianceType::Learned || v == VarianceType::LearnedRange; }

void expect_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                  double rel = 0) {
  test::expect_same_values(got, want, what, rel);
}

// Runs one case at loop step `step` of a schedule; table mode reads the coefficients from a device table.
void run_case(const Case& cs, int step, bool table_mode) {
  SchedulerConfig sc;
  sc.prediction_type = cs.pred;
  sc.variance_type = cs.var;
  const int steps = 10;
  SamplingPlan plan = make_sampling_plan(sc, cs.kind, steps, cs.eta);
  const StepCoeffs k = plan.coeffs[size_t(step)];
  const int B = cs.b, Bm = cs.cfg ? 2 * B : B;
  const int cm = learned(cs.var) ? 2 * cs.c : cs.c;
  const size_t n_per = size_t(cs.h) * cs.w * cs.c;
  const uint32_t seed = 1234u + uint32_t(step);

  std::vector<float> mo = test::random_normal(size_t(Bm) * cs.h * cs.w * cm, seed);
  if (learned(cs.var))  // the variance channels: positive for sqrt (learned), [-1, 1] for learned_range
    for (size_t i = 0; i < mo.size(); ++i)
      if (int(i % size_t(cm)) >= cs.c) mo[i] = cs.var == VarianceType::Learned ? std::fabs(mo[i]) * 1e-2f : std::tanh(mo[i]);
  if (cs.thresholding)  // spread x0 so the quantile is > 1 and clamps
    for (auto& v : mo) v *= 3.0f;
  std::vector<float> x = test::random_normal(size_t(B) * n_per, seed + 1);
  std::vector<float> noise = test::random_normal(size_t(B) * n_per, seed + 2);
  test::round_to(cs.dtype, mo);  // the reference sees exactly what the kernel reads

  SchedulerStepParams p;
  p.b = B; p.h = cs.h; p.w = cs.w; p.c = cs.c; p.cm = cm;
  p.cfg = cs.cfg; p.guidance_scale = cs.cfg ? 3.5f : 1.f;
  p.kind = cs.kind; p.prediction = cs.pred; p.variance = cs.var;
  p.clip_sample = cs.clip; p.clip_sample_range = 1.f;
  p.thresholding = cs.thresholding; p.dynamic_thresholding_ratio = 0.9f; p.sample_max_value = 2.5f;
  p.use_clipped_model_output = cs.clipped_out;
  p.k = k;
  p.noise_source = !k.add_noise ? NoiseSource::None : cs.torch_noise ? NoiseSource::Buffer : NoiseSource::Philox;
  p.seed = 0x123456789abcull;
  p.sample_index_base = 7;
  p.step_index = uint32_t(step);

  // CPU reference.
  std::vector<float> x_ref = x, x0_ref(size_t(B) * n_per), mi_ref(size_t(Bm) * n_per);
  SchedulerStepParams rp = p;
  rp.model_out = mo.data();
  rp.x = x_ref.data();
  rp.pred_x0 = x0_ref.data();
  rp.model_in = mi_ref.data();
  rp.noise = noise.data();
  scheduler_step_ref(rp);
  test::round_to(cs.dtype, mi_ref);

  // GPU.
  test::DevTensor d_mo(mo.size(), cs.dtype), d_x(x.size(), DType::F32), d_x0(x.size(), DType::F32),
      d_mi(mi_ref.size(), cs.dtype);
  d_mo.upload(mo);
  d_x.upload(x);
  d_x0.poison();
  d_mi.poison();
  // Buffer noise: in table mode laid out per step (stride), this step's slot filled.
  const int64_t stride = table_mode ? int64_t(B) * int64_t(n_per) : 0;
  std::vector<float> noise_all(table_mode ? size_t(steps) * noise.size() : noise.size(), 0.f);
  std::copy(noise.begin(), noise.end(), noise_all.begin() + (table_mode ? size_t(step) * noise.size() : 0));
  test::DevTensor d_noise(noise_all.size(), DType::F32);
  d_noise.upload(noise_all);
  DeviceBuffer d_table(sizeof(StepCoeffs) * size_t(steps)), d_counter(sizeof(int));
  DIFFRT_CUDA_CHECK(cudaMemcpy(d_table.get(), plan.coeffs.data(), d_table.bytes(), cudaMemcpyHostToDevice));
  DIFFRT_CUDA_CHECK(cudaMemcpy(d_counter.get(), &step, sizeof(int), cudaMemcpyHostToDevice));

  SchedulerStepDeviceParams dp;
  dp.base = p;
  dp.base.x = static_cast<float*>(d_x.ptr());
  dp.base.pred_x0 = static_cast<float*>(d_x0.ptr());
  dp.base.noise = static_cast<const float*>(d_noise.ptr());
  dp.model_dtype = cs.dtype;
  dp.model_out = d_mo.ptr();
  dp.model_in = d_mi.ptr();
  if (table_mode) {
    dp.coeff_table = d_table.as<StepCoeffs>();
    dp.step_counter = d_counter.as<int>();
    dp.noise_step_stride = stride;
    dp.base.k = StepCoeffs{};  // must not be read
    dp.base.step_index = 999;
    if (cs.torch_noise) dp.base.noise_source = NoiseSource::Buffer;
    else dp.base.noise_source = NoiseSource::Philox;
  }
  if (cs.dtype == DType::F32 && !table_mode) {
    SchedulerStepParams fp = dp.base;
    fp.model_out = static_cast<const float*>(d_mo.ptr());
    fp.model_in = static_cast<float*>(d_mi.ptr());
    scheduler_step_cuda(fp, nullptr);  // the header's fp32 entry point
  } else {
    scheduler_step_cuda_ex(dp, nullptr);
  }
  test::sync_check();

  const std::string what = cs.name() + " step " + std::to_string(step) + (table_mode ? " (table)" : "");
  const double rel = (cs.var == VarianceType::LearnedRange && cs.kind == SamplerKind::Ddpm && k.add_noise) ? 1e-6 : 0;
  expect_equal(d_x.download(), x_ref, what + " x", rel);
  expect_equal(d_x0.download(), x0_ref, what + " pred_x0");
  expect_equal(d_mi.download(), mi_ref, what + " model_in", rel);
  EXPECT_TRUE(d_x.guards_intact() && d_x0.guards_intact() && d_mi.guards_intact()) << what << ": guard bytes";
}

}  // namespace

TEST(SchedulerStepCuda, DdpmAllPredictionAndVarianceTypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (PredictionType pr : {PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction})
    for (VarianceType v : {VarianceType::FixedSmall, VarianceType::FixedSmallLog, VarianceType::FixedLarge,
                           VarianceType::Learned, VarianceType::LearnedRange})
      for (int step : {0, 4, 9}) {  // step 9 is t = 0: no noise
        Case cs;
        cs.pred = pr;
        cs.var = v;
        run_case(cs, step, false);
      }
}

TEST(SchedulerStepCuda, DdimEtaClippedOutputAndPredictions) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (PredictionType pr : {PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction})
    for (float eta : {0.f, 0.5f, 1.f})
      for (bool clipped : {false, true}) {
        Case cs;
        cs.kind = SamplerKind::Ddim;
        cs.pred = pr;
        cs.eta = eta;
        cs.clipped_out = clipped;
        run_case(cs, 3, false);
      }
}

TEST(SchedulerStepCuda, CfgNoClipThresholdingAndBufferNoise) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (SamplerKind kind : {SamplerKind::Ddpm, SamplerKind::Ddim}) {
    Case cs;
    cs.kind = kind;
    cs.eta = kind == SamplerKind::Ddim ? 0.7f : 0.f;
    cs.cfg = true;
    run_case(cs, 2, false);
    cs.clip = false;
    run_case(cs, 2, false);
    cs.thresholding = true;
    run_case(cs, 2, false);
    cs.torch_noise = true;
    run_case(cs, 2, false);
  }
}

TEST(SchedulerStepCuda, ThresholdingLargerSamples) {
  DIFFRT_SKIP_WITHOUT_GPU();
  Case cs;
  cs.thresholding = true;
  cs.b = 3; cs.h = 33; cs.w = 31; cs.c = 3;  // 3069 elements per sample: several radix buckets
  run_case(cs, 1, false);
  cs.kind = SamplerKind::Ddim;
  cs.pred = PredictionType::Sample;
  run_case(cs, 1, false);
}

TEST(SchedulerStepCuda, HalfAndBf16ModelDtypes) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : {DType::F16, DType::BF16})
    for (bool cfg : {false, true}) {
      Case cs;
      cs.dtype = t;
      cs.cfg = cfg;
      run_case(cs, 1, false);
      cs.kind = SamplerKind::Ddim;
      cs.eta = 1.f;
      run_case(cs, 1, false);
    }
}

TEST(SchedulerStepCuda, DeviceCoefficientTableAndCounter) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (int step : {0, 5, 9}) {
    Case cs;
    run_case(cs, step, true);
    cs.torch_noise = true;
    run_case(cs, step, true);
    cs.kind = SamplerKind::Ddim;
    cs.eta = 0.3f;
    cs.torch_noise = false;
    cs.dtype = DType::F16;
    cs.cfg = true;
    run_case(cs, step, true);
  }
}

TEST(SchedulerStepCuda, RejectsBadParams) {
  DIFFRT_SKIP_WITHOUT_GPU();
  SchedulerStepDeviceParams dp;
  dp.base.b = 1; dp.base.h = 2; dp.base.w = 2; dp.base.c = 3; dp.base.cm = 3;
  EXPECT_THROW(scheduler_step_cuda_ex(dp, nullptr), Error);  // null model_out
  DeviceBuffer buf(1024);
  dp.model_out = buf.get();
  dp.base.x = buf.as<float>();
  dp.base.cm = 4;
  EXPECT_THROW(scheduler_step_cuda_ex(dp, nullptr), Error);  // cm neither c nor 2c
  dp.base.cm = 3;
  dp.step_counter = reinterpret_cast<const int*>(buf.get());
  EXPECT_THROW(scheduler_step_cuda_ex(dp, nullptr), Error);  // counter without table
}
