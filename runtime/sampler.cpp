// Sampling loop (contract in sampler.h). The scheduler update is the fused CPU reference step;
// a CUDA executor will swap in scheduler_step_cuda with the same params struct.
// Tested by tests/sampler_test.cpp against DDPMPipeline / DDIMPipeline runs with a fake UNet.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "kernels/common/philox.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "runtime/rng.h"

namespace diffrt {
namespace {

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, "sample request: " + msg); }

}  // namespace

int effective_steps(const SampleRequest& r) {
  if (r.steps != 0) return r.steps;
  return r.sampler == SamplerKind::Ddpm ? 1000 : 50;
}

bool guidance_on(const SampleRequest& r) {
  return r.guidance_scale > 1.0f && (r.text_cfg || !r.class_labels.empty());
}

std::vector<int32_t> model_labels(const SampleRequest& r) {
  std::vector<int32_t> labels;
  if (guidance_on(r) && !r.text_cfg) {
    labels.assign(size_t(r.batch), r.null_class);
    labels.insert(labels.end(), r.class_labels.begin(), r.class_labels.end());
  } else {
    labels = r.class_labels;
  }
  return labels;
}

SchedulerStepParams make_step_params(const SchedulerConfig& cfg, const SampleRequest& r, int cm) {
  SchedulerStepParams p;
  p.b = r.batch; p.h = r.height; p.w = r.width; p.c = r.channels; p.cm = cm;
  p.cfg = guidance_on(r);
  p.guidance_scale = r.guidance_scale;
  p.kind = r.sampler;
  p.prediction = cfg.prediction_type;
  p.variance = cfg.variance_type;
  p.clip_sample = cfg.clip_sample;
  p.clip_sample_range = float(cfg.clip_sample_range);
  p.thresholding = cfg.thresholding;
  p.dynamic_thresholding_ratio = float(cfg.dynamic_thresholding_ratio);
  p.sample_max_value = float(cfg.sample_max_value);
  p.use_clipped_model_output = r.use_clipped_model_output;
  p.seed = r.seed;
  p.sample_index_base = r.first_sample_index;
  return p;
}

void validate_sample_request(const SchedulerConfig& cfg, const SampleRequest& r, int cm) {
  validate_scheduler_config(cfg, "scheduler config");
  const int steps = effective_steps(r);
  if (steps < 1 || steps > cfg.num_train_timesteps)
    bad("steps = " + std::to_string(r.steps) + " must be in [1, num_train_timesteps = " +
        std::to_string(cfg.num_train_timesteps) + "] (0 = pipeline default)");
  if (r.batch < 1 || r.batch > 65536) bad("batch = " + std::to_string(r.batch) + " must be in [1, 65536]");
  if (r.height < 1 || r.width < 1 || r.channels < 1 || r.height > 16384 || r.width > 16384 || r.channels > 4096)
    bad("shape height=" + std::to_string(r.height) + " width=" + std::to_string(r.width) +
        " channels=" + std::to_string(r.channels) + " out of range");
  if (uint64_t(r.height) * r.width * r.channels > (1ull << 31))
    bad("height*width*channels exceeds 2^31 elements per sample");
  if (cm != r.channels && cm != 2 * r.channels)
    bad("model output channels " + std::to_string(cm) + " must equal channels (" + std::to_string(r.channels) +
        ") or twice that (learned variance)");
  const bool learned = cfg.variance_type == VarianceType::Learned || cfg.variance_type == VarianceType::LearnedRange;
  if (r.sampler == SamplerKind::Ddpm && learned && cm != 2 * r.channels)
    bad(std::string("variance_type ") + to_string(cfg.variance_type) + " needs a model with 2*channels outputs, got " +
        std::to_string(cm));
  if (!(r.eta >= 0.0f && r.eta <= 1.0f)) bad("eta = " + std::to_string(r.eta) + " must be in [0, 1]");
  if (r.sampler == SamplerKind::Ddpm && r.eta != 0.0f) bad("eta applies to ddim only, got " + std::to_string(r.eta));
  if (!std::isfinite(r.guidance_scale)) bad("guidance_scale is not finite");
  if (!r.class_labels.empty() && r.class_labels.size() != size_t(r.batch))
    bad("class_labels has " + std::to_string(r.class_labels.size()) + " entries, batch is " + std::to_string(r.batch));
  for (int32_t l : r.class_labels)
    if (l < 0) bad("class label " + std::to_string(l) + " is negative");
  if (r.text_cfg && !r.class_labels.empty()) bad("class_labels are not taken by a text-conditioned model");
  if (r.guidance_scale > 1.0f && r.class_labels.empty() && !r.text_cfg)
    bad("guidance_scale = " + std::to_string(r.guidance_scale) + " > 1 needs class_labels");
  if (guidance_on(r) && !r.text_cfg && r.null_class < 0)
    bad("null_class = " + std::to_string(r.null_class) + " must be set (>= 0) for classifier-free guidance");
  if (r.rng == RngKind::Philox && uint64_t(r.first_sample_index) + uint64_t(r.batch) > (1ull << 32))
    bad("first_sample_index + batch exceeds 2^32");
}

std::vector<float> run_sampler(const SchedulerConfig& cfg, const SampleRequest& r, int cm,
                               const UNetFn& unet, const ProgressFn& progress) {
  validate_sample_request(cfg, r, cm);
  if (!unet) bad("unet callback is empty");
  const int steps = effective_steps(r);
  const SamplingPlan plan = make_sampling_plan(cfg, r.sampler, steps, r.eta);
  const int B = r.batch, H = r.height, W = r.width, C = r.channels;
  const int Bm = model_batch(r);
  const size_t per = size_t(H) * W * C;
  const std::vector<int32_t> labels = model_labels(r);

  TorchGenerator gen(r.seed);
  std::vector<float> x(size_t(B) * per);
  if (r.rng == RngKind::Torch) {
    x = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
  } else {
    for (int n = 0; n < B; ++n)
      fill_philox_normal(r.seed, r.first_sample_index + uint32_t(n), 0, philox::kTagInitial, H, W, C,
                         x.data() + size_t(n) * per);
  }
  std::vector<float> model_in(size_t(Bm) * per), model_out(size_t(Bm) * H * W * cm), noise;
  for (int n = 0; n < Bm; ++n) std::copy(x.begin() + size_t(n % B) * per, x.begin() + size_t(n % B + 1) * per,
                                         model_in.begin() + size_t(n) * per);
  std::vector<float> tvec(static_cast<size_t>(Bm));

  SchedulerStepParams p = make_step_params(cfg, r, cm);
  p.x = x.data();
  p.model_in = model_in.data();
  p.model_out = model_out.data();

  const int total = int(plan.timesteps.size());
  for (int i = 0; i < total; ++i) {
    const StepCoeffs& k = plan.coeffs[size_t(i)];
    std::fill(tvec.begin(), tvec.end(), float(k.timestep));
    unet(model_in.data(), tvec.data(), labels.empty() ? nullptr : labels.data(), Bm, model_out.data());
    p.k = k;
    p.step_index = uint32_t(i);
    if (!k.add_noise) {
      p.noise_source = NoiseSource::None;
    } else if (r.rng == RngKind::Torch) {
      noise = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
      p.noise = noise.data();
      p.noise_source = NoiseSource::Buffer;
    } else {
      p.noise_source = NoiseSource::Philox;
    }
    scheduler_step_ref(p);
    if (progress && !progress(i + 1, total))
      fail(ErrorCode::Cancelled, "sampling cancelled by the progress callback after step " +
                                     std::to_string(i + 1) + " of " + std::to_string(total));
  }
  return x;
}

std::vector<float> to_image_01(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = std::min(std::max(x[i] / 2.0f + 0.5f, 0.0f), 1.0f);
  return y;
}

}  // namespace diffrt
