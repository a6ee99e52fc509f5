// Working-memory estimates of a job (contracts in engine.h). Upper bounds of what the backends allocate beyond
// the shared weights; the CUDA figure comes from the planner's device report (runtime/cuda_plan.h), which is
// what the CUDA executor and sampler allocate. Tested by tests/api_test.cpp and tests/cuda_plan_test.cpp.
#include <algorithm>
#include <limits>

#include "base/error.h"
#include "runtime/cuda_plan.h"
#include "runtime/engine/engine.h"
#include "runtime/plan.h"

namespace diffrt::engine {

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

uint64_t sat_add(uint64_t a, uint64_t b) { return a > kU64Max - b ? kU64Max : a + b; }
uint64_t sat_mul(uint64_t a, uint64_t b) { return b && a > kU64Max / b ? kU64Max : a * b; }
uint64_t sat_sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

// Plans for estimates: the planner's arena cap (a sanity limit for real runs) is lifted so an absurd request
// is reported with the bytes it needs (out of memory) rather than refused as too large.
PlanLimits estimate_limits() {
  PlanLimits l;
  l.max_arena_bytes = uint64_t(1) << 62;
  return l;
}

}  // namespace

uint64_t estimate_cpu_bytes(const ModelFile& mf, const Job& p) {
  const SampleRequest& r = p.req;
  const PlanLimits lim = estimate_limits();
  const MemoryPlan plan = plan_memory(mf.graph, PlanInputs{p.model_batch, r.height, r.width, p.context_len}, lim);
  const uint64_t per = uint64_t(r.height) * uint64_t(r.width);
  const uint64_t cm = uint64_t(mf.graph.out_channels);
  // The loop: arena + conv scratch + x, noise, image, copy (B rows) + model in/out (Bm rows) + text context.
  uint64_t loop = sat_add(plan.arena_elems, plan.conv_scratch_elems);
  loop = sat_add(loop, sat_mul(per, uint64_t(r.batch) * uint64_t(r.channels) * 4));
  loop = sat_add(loop, sat_mul(per, uint64_t(p.model_batch) * (uint64_t(r.channels) + cm)));
  loop = sat_add(loop, uint64_t(p.model_batch) * uint64_t(p.context_len) * uint64_t(mf.graph.context_dim));
  uint64_t elems = loop;
  if (p.text_rows > 0 && mf.text_encoder.present()) {
    // The text encoder (before the loop): its arena + scratch + the ids and its output, then the embeddings
    // repeated per image (positive and negative: model_batch rows) and the model context built from them.
    const Graph& tg = mf.text_encoder.graph;
    PlanInputs tin;
    tin.n = p.text_rows; tin.h = 1; tin.w = 1; tin.seq_len = p.context_len;
    const MemoryPlan tplan = plan_memory(tg, tin, lim);
    uint64_t te = sat_add(tplan.arena_elems, tplan.conv_scratch_elems);
    te = sat_add(te, tplan.shapes[size_t(tg.output)].numel());
    te = sat_add(te, uint64_t(p.text_rows) * uint64_t(p.context_len));
    te = sat_add(te, sat_mul(uint64_t(p.model_batch) * uint64_t(p.context_len), uint64_t(tg.out_channels) * 2));
    elems = std::max(elems, te);
  }
  if (p.decode) {
    const Graph& vg = mf.vae.graph;
    const MemoryPlan vplan = plan_memory(vg, PlanInputs{r.batch, r.height, r.width, 0}, lim);
    // The decode: its arena + scratch + the latents + raw and mapped images.
    uint64_t dec = sat_add(vplan.arena_elems, vplan.conv_scratch_elems);
    dec = sat_add(dec, sat_mul(per, uint64_t(r.batch) * uint64_t(r.channels)));
    dec = sat_add(dec, sat_mul(vplan.shapes[size_t(vg.output)].numel(), 2));
    elems = std::max(elems, dec);
  }
  if (p.image.present()) {
    // Image-to-image / inpainting, before the loop: the VAE encoder on the image (and the masked image) with its
    // arena, scratch, moments and latents; then, through the loop, the job's pixels and mask and the sampler's image
    // latents, noise, mask and extra channels (image_inputs.h).
    const JobImage& im = p.image;
    const uint64_t pix = uint64_t(im.h) * uint64_t(im.w);
    uint64_t keep = sat_add(sat_mul(pix, uint64_t(im.n) * uint64_t(im.c)), sat_mul(pix, uint64_t(im.mask_n)));
    keep = sat_add(keep, sat_mul(per, uint64_t(r.batch) * (2 * uint64_t(r.channels) + 1)));
    if (r.model_in_channels > r.channels)
      keep = sat_add(keep, sat_mul(per, uint64_t(p.model_batch) * uint64_t(r.model_in_channels - r.channels)));
    if (im.latent && mf.vae_encoder.present()) {
      const int rows = r.rng == RngKind::Torch ? std::max(im.n, im.masked_rows()) : r.batch;  // see image_inputs.h
      const Graph& eg = mf.vae_encoder.graph;
      const MemoryPlan eplan = plan_memory(eg, PlanInputs{rows, im.h, im.w, 0}, lim);
      uint64_t enc = sat_add(eplan.arena_elems, eplan.conv_scratch_elems);
      enc = sat_add(enc, sat_mul(eplan.shapes[size_t(eg.output)].numel(), 2));  // moments and latents
      enc = sat_add(enc, sat_mul(pix, uint64_t(rows) * uint64_t(im.c)));        // the masked image
      elems = std::max(elems, enc);
    }
    elems = sat_add(elems, keep);
  }
  return sat_mul(elems, sizeof(float));
}

uint64_t estimate_cuda_bytes(const ModelFile& mf, const Job& p) {
  if (mf.tensors.empty()) fail(ErrorCode::InvalidModel, "model file has no tensors");
  const SampleRequest& r = p.req;
  const PlanLimits lim = estimate_limits();
  const DType dt = mf.graph.dtype;  // the denoiser's (each graph runs in its own dtype: Graph::dtype)
  const int steps = effective_steps(r);
  CudaMemoryQuery q;
  q.batch = r.batch; q.h = r.height; q.w = r.width; q.cfg = guidance_on(r); q.steps = steps;
  q.context_len = p.text ? p.context_len : 0;
  q.text_rows = mf.text_encoder.present() ? p.text_rows : 0;
  q.decode = p.decode;
  q.limits = estimate_limits();
  const CudaMemoryReport rep = cuda_memory_report(mf, q);
  // The sampler's tables beyond the report (run_sampler_cuda's CudaSamplerOptions defaults).
  const uint64_t n_per = uint64_t(r.height) * uint64_t(r.width) * uint64_t(r.channels);
  const uint64_t step_noise = sat_mul(sat_mul(uint64_t(r.batch), n_per), sizeof(float));
  uint64_t extra = 0;
  const bool noisy = r.sampler == SamplerKind::Ddpm || r.eta > 0.0f;
  if (r.rng == RngKind::Torch && noisy) {
    const uint64_t all = sat_mul(step_noise, uint64_t(steps));
    extra = sat_add(extra, all <= (uint64_t(2) << 30) ? all : step_noise);
  }
  for (const Node& nd : mf.graph.nodes)
    if (const auto* a = std::get_if<TimeEmbeddingAttrs>(&nd.attrs)) {
      const uint64_t table = sat_mul(sat_mul(uint64_t(steps), uint64_t(p.model_batch)), uint64_t(a->out_dim) * dtype_size(dt));
      if (table <= (uint64_t(1) << 30)) extra = sat_add(extra, sat_add(table, uint64_t(steps) * uint64_t(p.model_batch) * 4));
      break;
    }
  if (p.sched.thresholding) extra = sat_add(extra, sat_add(step_noise, uint64_t(r.batch) * 4 + 512));
  uint64_t enc = 0;
  if (p.image.present()) {
    // Image-to-image / inpainting: the sampler's image latents, initial noise, mask and extra input channels on the
    // device through the loop; before it, the VAE encoder's executor (encode_latents_cuda: arena, inputs, GroupNorm
    // workspace, the latents and the posterior noise) beside the library workspaces.
    const JobImage& im = p.image;
    const uint64_t lat = uint64_t(r.height) * uint64_t(r.width);
    uint64_t keep = sat_mul(lat, uint64_t(r.batch) * (2 * uint64_t(r.channels) + 1) * 4);
    if (r.model_in_channels > r.channels)
      keep = sat_add(keep, sat_mul(lat, uint64_t(p.model_batch) * uint64_t(r.model_in_channels - r.channels) * 4));
    extra = sat_add(extra, keep);
    if (im.latent && mf.vae_encoder.present()) {
      const int rows = r.rng == RngKind::Torch ? std::max(im.n, im.masked_rows()) : r.batch;  // see image_inputs.h
      const Graph& eg = mf.vae_encoder.graph;
      const MemoryPlan eplan = plan_memory(eg, PlanInputs{rows, im.h, im.w, 0}, lim);
      enc = cuda_executor_bytes(eg, eplan, eg.dtype).total();
      enc = sat_add(enc, sat_mul(eplan.shapes[size_t(eg.output)].numel(), 4));  // latents and eps (fp32, half the moments each)
      enc = sat_add(enc, kConvWorkspaceCap + kGemmWorkspaceBytes);
      const ContextScratch cs = cuda_context_scratch(eg, eplan, eg.dtype);
      enc = sat_add(enc, sat_add(cs.conv_pad, cs.silu));
    }
  }
  const uint64_t loop = sat_add(sat_sub(rep.total_bytes, rep.weight_bytes), extra);
  const uint64_t dec = p.decode ? sat_sub(rep.vae_total_bytes, rep.weight_bytes) : 0;
  const uint64_t text = sat_sub(rep.text_total_bytes, rep.weight_bytes);
  return std::max({loop, dec, text, enc});
}

}  // namespace diffrt::engine
