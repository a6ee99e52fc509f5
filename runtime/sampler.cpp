// Sampling loop (contract in sampler.h): the plan (runtime/sampler_plan.h) executed by the generic fused step's
// CPU reference (kernels/sampler_step/sampler_step_ref.cpp). The CUDA loop (runtime/cuda/cuda_sampler.cpp) runs
// the same plan with the same step on the device.
// Tested by tests/sampler_test.cpp (DDPMPipeline / DDIMPipeline runs, Philox, CFG, validation) and
// tests/sampler_loop_test.cpp (160 diffusers loops of every scheduler class).
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "kernels/common/philox.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "model/scheduler_config.h"
#include "runtime/rng.h"

namespace diffrt {
namespace {

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, "sample request: " + msg); }

}  // namespace

int effective_steps(const SampleRequest& r) {
  if (r.steps != 0) return r.steps;
  return default_steps(r.sampler);
}

bool guidance_on(const SampleRequest& r) {
  return r.guidance_scale > 1.0f && (r.text_cfg || !r.class_labels.empty());
}

std::vector<int32_t> model_labels(const SampleRequest& r) {
  std::vector<int32_t> labels;
  if (guidance_on(r) && !r.text_cfg) {
    std::vector<int32_t> nulls(size_t(r.batch), r.null_class);
    if (r.cfg_order == CfgOrder::CondFirst) {
      labels = r.class_labels;
      labels.insert(labels.end(), nulls.begin(), nulls.end());
    } else {
      labels = nulls;
      labels.insert(labels.end(), r.class_labels.begin(), r.class_labels.end());
    }
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

void validate_sample_request(const SchedulerConfig& cfg_in, const SampleRequest& r, int cm) {
  validate_scheduler_config(cfg_in, "scheduler config");
  const SchedulerConfig cfg = scheduler_config_for(cfg_in, r.sampler);
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
  if (r.model_in_channels != 0 && (r.model_in_channels < r.channels || r.model_in_channels > 4096))
    bad("model_in_channels = " + std::to_string(r.model_in_channels) + " must be 0 or in [channels, 4096]");
  const bool learned = !cfg.variance_type_null &&
                       (cfg.variance_type == VarianceType::Learned || cfg.variance_type == VarianceType::LearnedRange);
  if (cfg.klass == SamplerKind::Ddpm && learned && cm != 2 * r.channels)
    bad(std::string("variance_type ") + to_string(cfg.variance_type) + " needs a model with 2*channels outputs, got " +
        std::to_string(cm));
  if (!(r.eta >= 0.0f && r.eta <= 1.0f)) bad("eta = " + std::to_string(r.eta) + " must be in [0, 1]");
  if (cfg.klass != SamplerKind::Ddim && r.eta != 0.0f)
    bad("eta applies to ddim only, got " + std::to_string(r.eta) + " for " + scheduler_short_name(cfg.klass));
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
  if (!(r.strength >= 0.0 && r.strength <= 1.0)) bad("strength = " + std::to_string(r.strength) + " must be in [0, 1]");
  if ((r.start_from_image || r.legacy_inpaint_blend) && !r.img2img)
    bad("start_from_image and legacy_inpaint_blend need img2img");
}

SamplerPlan plan_for_request(const SchedulerConfig& cfg_in, const SampleRequest& r, int cm) {
  validate_sample_request(cfg_in, r, cm);
  const SchedulerConfig cfg = scheduler_config_for(cfg_in, r.sampler);
  PlanRequest pr;
  pr.steps = effective_steps(r);
  pr.eta = r.eta;
  pr.use_clipped_model_output = r.use_clipped_model_output;
  pr.model_predicts_variance = cm == 2 * r.channels;
  pr.img2img = r.img2img;
  pr.strength = r.strength;
  pr.start_from_image = r.start_from_image;
  pr.legacy_inpaint_blend = r.legacy_inpaint_blend;
  return make_sampler_plan(cfg, pr);
}

uint64_t sampler_state_bytes(const SamplerPlan& plan, const SampleRequest& r, uint64_t max_torch_noise_bytes) {
  const uint64_t per = uint64_t(r.batch) * uint64_t(r.height) * uint64_t(r.width) * uint64_t(r.channels) * 4;
  uint64_t bytes = per * uint64_t(plan.num_slots) + per;  // slots + initial noise
  if (plan.reads_image) bytes += per;
  if (plan.reads_mask) bytes += uint64_t(r.batch) * uint64_t(r.height) * uint64_t(r.width) * 4;
  bool thresh = false;
  uint64_t read_draws = 0;
  for (const StepRow& row : plan.rows) {
    thresh = thresh || row.thresh_at >= 0;
    read_draws += row.noise == StepNoise::Step ? 1 : 0;
  }
  if (thresh) bytes += per + uint64_t(r.batch) * 4 + 512;
  if (r.rng == RngKind::Torch && read_draws) bytes += per * read_draws <= max_torch_noise_bytes ? per * read_draws : per;
  return bytes;
}

std::vector<float> run_sampler(const SchedulerConfig& cfg, const SampleRequest& r, int cm, const UNetFn& unet,
                               const ProgressFn& progress, const SamplerInputs& in) {
  const SamplerPlan plan = plan_for_request(cfg, r, cm);
  if (!unet) bad("unet callback is empty");
  const int B = r.batch, H = r.height, W = r.width, C = r.channels;
  const int cin = r.model_in_channels ? r.model_in_channels : C;
  const int Bm = model_batch(r);
  const size_t per = size_t(H) * W * C;
  const size_t pix = size_t(H) * W;
  if (plan.reads_image && !in.image_latents) bad("this request starts from an image: image_latents are needed");
  if (plan.reads_mask && !in.mask) bad("legacy inpainting needs a mask");
  if (cin > C && !in.model_in_extra) bad("model_in_channels > channels needs model_in_extra");
  const std::vector<int32_t> labels = model_labels(r);

  TorchGenerator own(r.seed);
  TorchGenerator& gen = in.generator ? *in.generator : own;
  std::vector<float> noise0(size_t(B) * per);
  if (in.initial_noise) {
    std::copy(in.initial_noise, in.initial_noise + noise0.size(), noise0.begin());
  } else if (r.rng == RngKind::Torch) {
    noise0 = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
  } else {
    for (int n = 0; n < B; ++n)
      fill_philox_normal(r.seed, r.first_sample_index + uint32_t(n), 0, philox::kTagInitial, H, W, C,
                         noise0.data() + size_t(n) * per);
  }
  std::vector<std::vector<float>> slots(size_t(plan.num_slots), std::vector<float>(size_t(B) * per, 0.0f));
  std::vector<float> model_in(size_t(Bm) * pix * size_t(cin), 0.0f), model_out(size_t(Bm) * pix * size_t(cm));
  if (cin > C)  // constant extra channels (mask, masked-image latents): written once, never by the step
    for (size_t q = 0; q < size_t(Bm) * pix; ++q)
      std::copy(in.model_in_extra + q * size_t(cin - C), in.model_in_extra + (q + 1) * size_t(cin - C),
                model_in.begin() + q * size_t(cin) + size_t(C));
  SamplerStepParams p;
  p.b = B; p.h = H; p.w = W; p.c = C; p.cm = cm; p.cin = cin;
  p.cfg = guidance_on(r);
  p.cfg_order = r.cfg_order;
  p.guidance_scale = r.guidance_scale;
  p.thresh_ratio = plan.thresh_ratio;
  p.thresh_max = plan.thresh_max;
  p.model_out = model_out.data();
  p.model_in = model_in.data();
  for (int s = 0; s < plan.num_slots; ++s) p.slots[s] = slots[size_t(s)].data();
  p.image = in.image_latents;
  p.init_noise = noise0.data();
  p.mask = in.mask;
  p.seed = r.seed;
  p.sample_index_base = r.first_sample_index;
  p.row = &plan.init;
  sampler_step_ref(p);

  std::vector<float> tvec(static_cast<size_t>(Bm)), draw;
  int draws = 0, reported = 0;
  for (int i = 0; i < plan.calls(); ++i) {
    std::fill(tvec.begin(), tvec.end(), plan.model_timesteps[size_t(i)]);
    unet(model_in.data(), tvec.data(), labels.empty() ? nullptr : labels.data(), Bm, model_out.data());
    const StepRow& row = plan.rows[size_t(i)];
    p.noise = nullptr;
    for (int d = 0; d < plan.draws[size_t(i)]; ++d, ++draws) {
      if (in.step_noise) {
        draw.assign(size_t(B) * per, 0.0f);
        in.step_noise(draws, draw.data());
      } else if (r.rng == RngKind::Torch) {
        draw = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
      }
    }
    if (row.noise == StepNoise::Step && (r.rng == RngKind::Torch || in.step_noise)) p.noise = draw.data();
    p.row = &row;
    sampler_step_ref(p);
    const int done = plan.progress_after[size_t(i)];
    if (progress && done > reported) {
      reported = done;
      if (!progress(done, plan.steps))
        fail(ErrorCode::Cancelled, "sampling cancelled by the progress callback after step " + std::to_string(done) +
                                       " of " + std::to_string(plan.steps));
    }
  }
  return std::move(slots[0]);
}

std::vector<float> to_image_01(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = std::min(std::max(x[i] / 2.0f + 0.5f, 0.0f), 1.0f);
  return y;
}

}  // namespace diffrt
