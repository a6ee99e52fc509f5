// The backend-independent part of diffrt bench / profile (contracts in bench_workload.h). The request itself is
// validated and built by the API (api/bench.cpp: the same rules as every sample request); this adds the random
// inputs of one UNet call and one VAE decode.
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

Workload make_workload(const ModelFile& mf, const WorkloadRequest& q) {
  if (mf.graph.sample < 0 || mf.graph.timestep < 0)
    fail(ErrorCode::InvalidArgument,
         "bench/profile need a denoiser model file (a UNet with sample and timestep inputs)");
  Workload w;
  w.sched = q.sched;
  w.scheduler_json = q.scheduler_json;
  w.req = q.req;
  w.sampler = q.sampler;
  w.text_model = mf.graph.context >= 0;
  w.latent_model = mf.vae.present();
  w.vae_factor = w.latent_model ? vae_scale_factor(mf) : 1;
  w.img_h = w.req.height * w.vae_factor;
  w.img_w = w.req.width * w.vae_factor;
  w.cfg = guidance_on(w.req);
  w.model_batch = model_batch(w.req);
  w.context = q.context;
  w.context_len = q.context_len;
  w.random_text = q.random_text;
  const SampleRequest& r = w.req;
  if (w.text_model && w.context.size() != size_t(w.model_batch) * size_t(w.context_len) * size_t(mf.graph.context_dim))
    fail(ErrorCode::Internal, "bench workload: the text context does not match the model batch");

  std::mt19937_64 rng(r.seed ^ 0x5851f42d4c957f2dull);
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

std::vector<float> random_normal(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return normal(n, rng);
}

nlohmann::json workload_json(const Workload& w) {
  return {{"batch", w.req.batch}, {"model_batch", w.model_batch}, {"cfg", w.cfg},
          {"guidance_scale", w.req.guidance_scale}, {"height", w.img_h}, {"width", w.img_w},
          {"latent_height", w.latent_model ? w.req.height : 0}, {"latent_width", w.latent_model ? w.req.width : 0},
          {"channels", w.req.channels}, {"steps", w.req.steps}, {"sampler", w.sampler},
          {"karras", w.sched.use_karras_sigmas}, {"scheduler", describe_scheduler(w.sched)}, {"eta", w.req.eta},
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
