#include "runtime/latent_pipeline.h"

#include <cmath>

#include "base/error.h"
#include "base/npy.h"
#include "runtime/plan.h"

namespace diffrt {

TextEmbeds read_text_embeds(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.type != NpyType::F32 || a.shape.size() != 3 || a.shape[0] < 1 || a.shape[1] < 1 || a.shape[2] < 1)
    fail(ErrorCode::InvalidArgument, path + ": expected float32 text embeddings [batch, tokens, dim]");
  if (a.shape[0] > 4096 || a.shape[1] > 65536 || a.shape[2] > 65536)
    fail(ErrorCode::InvalidArgument, path + ": embedding shape out of range");
  TextEmbeds e;
  e.batch = int(a.shape[0]); e.len = int(a.shape[1]); e.dim = int(a.shape[2]);
  e.data = a.as_f32();
  for (float v : e.data)
    if (!std::isfinite(v)) fail(ErrorCode::InvalidArgument, path + ": contains NaN or infinity");
  return e;
}

std::vector<float> model_context(const Graph& unet, const TextEmbeds& pos, const TextEmbeds* neg, bool guidance) {
  if (unet.context < 0) fail(ErrorCode::InvalidArgument, "this model is not text-conditioned: it takes no prompt embeddings");
  if (pos.dim != unet.context_dim)
    fail(ErrorCode::InvalidArgument, "prompt embeddings have dim " + std::to_string(pos.dim) +
                                         ", the UNet's cross_attention_dim is " + std::to_string(unet.context_dim));
  if (!guidance) return pos.data;
  if (!neg)
    fail(ErrorCode::InvalidArgument, "guidance needs negative prompt embeddings (diffusers uses the embeddings of the "
                                     "empty prompt \"\"); give them, or a guidance scale <= 1");
  if (neg->batch != pos.batch || neg->len != pos.len || neg->dim != pos.dim)
    fail(ErrorCode::InvalidArgument, "negative prompt embeddings [" + std::to_string(neg->batch) + ", " +
                                         std::to_string(neg->len) + ", " + std::to_string(neg->dim) +
                                         "] must have the shape of the prompt embeddings [" + std::to_string(pos.batch) +
                                         ", " + std::to_string(pos.len) + ", " + std::to_string(pos.dim) + "]");
  std::vector<float> ctx(neg->data);
  ctx.insert(ctx.end(), pos.data.begin(), pos.data.end());
  return ctx;
}

int vae_scale_factor(const ModelFile& mf) {
  if (!mf.vae.present()) fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder");
  const MemoryPlan p = plan_memory(mf.vae.graph, 1, 1, 1);  // shape inference only
  return int(p.shapes[size_t(mf.vae.graph.output)].h);
}

std::vector<float> sample_latents_cpu(const ModelFile& mf, const CpuWeights& weights, const SchedulerConfig& cfg,
                                      const SampleRequest& req, const std::vector<float>& context, int len,
                                      const ProgressFn& progress, const SamplerInputs& inputs) {
  const int bm = model_batch(req);
  if (context.size() != size_t(bm) * size_t(len) * size_t(mf.graph.context_dim))
    fail(ErrorCode::Internal, "text context does not match the model batch");
  CpuExecutor ex(mf, weights, mf.graph, PlanInputs{bm, req.height, req.width, len});  // size checks before the loop
  UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* out) {
    if (n != bm || labels) fail(ErrorCode::Internal, "sampler batch changed");
    GraphInputs in;
    in.sample = x; in.timesteps = t; in.context = context.data();
    ex.run(in, out);
  };
  return run_sampler(cfg, req, mf.graph.out_channels, unet, progress, inputs);
}

std::vector<float> decode_latents_cpu(const ModelFile& mf, const CpuWeights& weights, const std::vector<float>& latents,
                                      int n, int h, int w) {
  if (!mf.vae.present()) fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder");
  const Graph& g = mf.vae.graph;
  if (latents.size() != size_t(n) * size_t(h) * size_t(w) * size_t(g.in_channels))
    fail(ErrorCode::InvalidArgument, "latents do not match [n, h, w, " + std::to_string(g.in_channels) + "]");
  CpuExecutor ex(mf, weights, g, PlanInputs{n, h, w, 0});
  std::vector<float> out(ex.plan().shapes[size_t(g.output)].numel());
  GraphInputs in;
  in.sample = latents.data();
  ex.run(in, out.data());
  return out;
}

}  // namespace diffrt
