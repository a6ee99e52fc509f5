// The backend-independent part of diffrt bench / profile (contracts in bench_workload.h). The request is built
// with the same rules as `diffrt sample` (cli/cmd_sample.cpp): sampler from the scheduler class,
// guidance default 7.5 for text-conditioned models, [negative; positive] text context, VAE factor.
#include "runtime/bench_workload.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "base/error.h"
#include "runtime/latent_pipeline.h"
#include "runtime/profile_trace.h"

namespace diffrt {

namespace {

std::vector<float> normal(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TextEmbeds random_embeds(int batch, int len, int dim, std::mt19937_64& rng) {
  TextEmbeds e;
  e.batch = batch; e.len = len; e.dim = dim;
  e.data = normal(size_t(batch) * size_t(len) * size_t(dim), rng);
  return e;
}

}  // namespace

GraphInputs Workload::unet_inputs() const {
  GraphInputs in;
  in.sample = unet_sample.data();
  in.timesteps = unet_timesteps.data();
  in.labels = unet_labels.empty() ? nullptr : unet_labels.data();
  in.context = context.empty() ? nullptr : context.data();
  return in;
}

GraphInputs Workload::vae_inputs() const {
  GraphInputs in;
  in.sample = vae_latents.data();
  return in;
}

Workload make_workload(const ModelFile& mf, const WorkloadOptions& o) {
  if (mf.graph.sample < 0 || mf.graph.timestep < 0)
    fail(ErrorCode::InvalidArgument,
         "bench/profile need a denoiser model file (a UNet with sample and timestep inputs)");
  if (o.batch < 1 || o.batch > 4096) fail(ErrorCode::InvalidArgument, "--batch must be in [1, 4096]");
  if (o.steps < 1 || o.steps > 10000) fail(ErrorCode::InvalidArgument, "--steps must be in [1, 10000]");
  if (!(o.guidance == o.guidance) || o.guidance > 1000 || (o.guidance < 0 && o.guidance != -1.0))
    fail(ErrorCode::InvalidArgument, "--guidance-scale must be a number in [0, 1000]");
  if (!(o.eta >= 0 && o.eta <= 10)) fail(ErrorCode::InvalidArgument, "--eta must be in [0, 10]");
  if (o.context_len < 1 || o.context_len > 4096) fail(ErrorCode::InvalidArgument, "--context-len must be in [1, 4096]");

  Workload w;
  w.scheduler_json = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  w.sched = scheduler_config_from_json(w.scheduler_json, "model file scheduler");
  w.text_model = mf.graph.context >= 0;
  w.latent_model = mf.vae.present();
  if (!w.text_model && (!o.prompt_embeds.empty() || !o.negative_prompt_embeds.empty()))
    fail(ErrorCode::InvalidArgument, "--prompt-embeds: this model is not text-conditioned");

  std::string sampler = o.sampler;
  if (sampler.empty()) {
    const nlohmann::json cls = w.scheduler_json.value("_class_name", nlohmann::json(""));
    sampler = cls == "DDPMScheduler" || (cls == "" && !w.text_model) ? "ddpm" : "ddim";
  }
  w.sampler = sampler;
  SampleRequest& r = w.req;
  if (sampler == "ddpm" || sampler == "ddim") {
    r.sampler = sampler == "ddim" ? SamplerKind::Ddim : SamplerKind::Ddpm;
  } else {
    // Any other sampler name: NAME.from_config(the model's scheduler config), as `diffrt sample --sampler NAME`.
    w.sched = select_sampler(w.sched, sampler, false, "--sampler " + sampler);
    r.sampler = w.sched.klass;
  }
  r.steps = o.steps;
  r.eta = float(o.eta);
  r.seed = o.seed;
  r.batch = o.batch;

  const int sample_size = mf.config.contains("sample_size") && mf.config["sample_size"].is_number_integer()
                              ? mf.config["sample_size"].get<int>() : 0;
  w.vae_factor = w.latent_model ? vae_scale_factor(mf) : 1;
  const int f = w.vae_factor;
  w.img_h = o.height ? o.height : sample_size * f;
  w.img_w = o.width ? o.width : sample_size * f;
  if (w.img_h <= 0 || w.img_w <= 0) fail(ErrorCode::InvalidArgument, "the model has no sample_size: give -H and -W");
  if (w.img_h % f || w.img_w % f)
    fail(ErrorCode::InvalidArgument, "-H/-W must be multiples of the VAE's factor " + std::to_string(f) + ", got " +
                                         std::to_string(w.img_h) + "x" + std::to_string(w.img_w));
  r.height = w.img_h / f;
  r.width = w.img_w / f;
  r.channels = mf.graph.in_channels;

  std::mt19937_64 rng(o.seed ^ 0x9e3779b97f4a7c15ull);
  TextEmbeds pos, neg;
  if (w.text_model) {
    if (!o.prompt_embeds.empty()) {
      pos = read_text_embeds(o.prompt_embeds);
      if (o.batch != 1 && o.batch != pos.batch)
        fail(ErrorCode::InvalidArgument, "--batch " + std::to_string(o.batch) + " but the prompt embeddings hold " +
                                             std::to_string(pos.batch) + " prompts (the batch is theirs)");
      r.batch = pos.batch;
    } else {
      pos = random_embeds(r.batch, o.context_len, mf.graph.context_dim, rng);
      w.random_text = true;
    }
    neg = !o.negative_prompt_embeds.empty() ? read_text_embeds(o.negative_prompt_embeds)
                                            : random_embeds(pos.batch, pos.len, pos.dim, rng);
    r.text_cfg = true;
  } else if (mf.conditioning.num_classes) {
    // Class-conditional: labels cycle over the classes (the null class excluded).
    std::vector<int32_t> classes;
    for (int c = 0; c < mf.conditioning.num_classes; ++c)
      if (c != mf.conditioning.null_class) classes.push_back(c);
    if (classes.empty()) fail(ErrorCode::InvalidModel, "class-conditional model without a non-null class");
    for (int i = 0; i < r.batch; ++i) r.class_labels.push_back(classes[size_t(i) % classes.size()]);
  }
  r.guidance_scale = float(o.guidance >= 0 ? o.guidance : w.text_model ? 7.5 : 1.0);
  r.null_class = mf.conditioning.null_class;
  if (guidance_on(r) && !w.text_model && r.null_class < 0)
    fail(ErrorCode::InvalidArgument, "--guidance-scale > 1 needs a null class; this model file has none");
  if (!w.text_model && !mf.conditioning.num_classes && r.guidance_scale > 1)
    fail(ErrorCode::InvalidArgument, "--guidance-scale > 1: this model has neither text nor class conditioning");
  validate_sample_request(w.sched, r, mf.graph.out_channels);
  w.cfg = guidance_on(r);
  w.model_batch = model_batch(r);
  if (w.text_model) {
    w.context = model_context(mf.graph, pos, &neg, w.cfg);
    w.context_len = pos.len;
  }

  w.unet_in = PlanInputs{w.model_batch, r.height, r.width, w.text_model ? w.context_len : 0};
  w.unet_sample = normal(size_t(w.model_batch) * size_t(r.height) * size_t(r.width) * size_t(r.channels), rng);
  const SamplerPlan plan = plan_for_request(w.sched, r, mf.graph.out_channels);
  w.unet_timesteps.assign(size_t(w.model_batch), plan.model_timesteps.empty() ? 0.0f : plan.model_timesteps.front());
  w.unet_labels = model_labels(r);
  if (w.latent_model) {
    w.vae_in = PlanInputs{r.batch, r.height, r.width, 0};
    const size_t latent = size_t(r.height) * size_t(r.width) * size_t(mf.vae.graph.in_channels);
    w.vae_latents = normal(size_t(r.batch) * latent, rng);
  }
  return w;
}

nlohmann::json workload_json(const Workload& w) {
  return {{"batch", w.req.batch}, {"model_batch", w.model_batch}, {"cfg", w.cfg},
          {"guidance_scale", w.req.guidance_scale}, {"height", w.img_h}, {"width", w.img_w},
          {"latent_height", w.latent_model ? w.req.height : 0}, {"latent_width", w.latent_model ? w.req.width : 0},
          {"channels", w.req.channels}, {"steps", w.req.steps}, {"sampler", w.sampler}, {"eta", w.req.eta},
          {"text_conditioned", w.text_model}, {"context_len", w.context_len}, {"random_text_embeddings", w.random_text},
          {"class_labels", w.req.class_labels}, {"latent_model", w.latent_model}, {"vae_factor", w.vae_factor},
          {"seed", w.req.seed}, {"unet_timestep", w.unet_timesteps.empty() ? 0.0f : w.unet_timesteps.front()}};
}

nlohmann::json timing_json(const std::vector<double>& ms) {
  if (ms.empty()) return nullptr;
  double sum = 0, mn = ms.front(), mx = ms.front();
  for (double v : ms) {
    sum += v;
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  return {{"n", ms.size()}, {"p50_ms", percentile(ms, 0.5)}, {"p90_ms", percentile(ms, 0.9)},
          {"p99_ms", percentile(ms, 0.99)}, {"min_ms", mn}, {"mean_ms", sum / double(ms.size())}, {"max_ms", mx}};
}

TensorBytes tensor_bytes(const ModelFile& mf) {
  TensorBytes t;
  for (const TensorInfo& ti : mf.tensors) t[ti.name] = ti.nbytes;
  return t;
}

}  // namespace diffrt
