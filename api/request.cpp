// Request validation and memory estimates of the embedding API (contracts in api_internal.h). The checks are
// the same as `diffrt sample`'s (cli/cmd_sample.cpp), so the CLI and the API accept and refuse the same
// requests; every refusal is Error(InvalidArgument) naming the field. Tested by tests/api_test.cpp.
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "api/api_internal.h"
#include "runtime/cuda_plan.h"
#include "base/json_fields.h"
#include "runtime/plan.h"

namespace diffrt {
namespace api {

void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

std::string bytes_str(uint64_t bytes) {
  return std::to_string(bytes) + " bytes (" + std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB)";
}

namespace {

constexpr size_t kMaxSchedulerJsonBytes = 1 << 20;
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

nlohmann::json merged_scheduler_json(const ModelFile& mf, const std::string& overrides) {
  nlohmann::json j = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  if (overrides.empty()) return j;
  if (overrides.size() > kMaxSchedulerJsonBytes) bad("scheduler config override: larger than 1 MiB");
  nlohmann::json o;
  try {
    o = parse_json_strict(overrides, "scheduler config override");
  } catch (const Error& e) {
    bad(e.what());
  }
  if (!o.is_object()) bad("scheduler config override: expected a JSON object, got " + std::string(o.type_name()));
  for (auto it = o.begin(); it != o.end(); ++it) j[it.key()] = it.value();
  return j;
}

void check_size(const char* what, int v, int factor, const std::string& factor_why) {
  if (v < 1 || v > 8192) bad(std::string(what) + " = " + std::to_string(v) + " must be in [1, 8192]");
  if (v % factor != 0)
    bad(std::string(what) + " = " + std::to_string(v) + " is not a multiple of the model's downsample factor " +
        std::to_string(factor) + factor_why + " (nearest valid: " + std::to_string(std::max(factor, v / factor * factor)) +
        " or " + std::to_string((v / factor + 1) * factor) + ")");
}

std::string shape_str(const TextEmbeddings& e) {
  return "[" + std::to_string(e.batch) + ", " + std::to_string(e.len) + ", " + std::to_string(e.dim) + "]";
}

// Structural checks of one embeddings view (its values are checked when the context is built).
void check_embeds(const char* what, const TextEmbeddings& e, const ModelInfo& info, int batch) {
  if (!e.data) bad(std::string(what) + ".data is null but its shape is " + shape_str(e));
  if (e.batch < 1 || e.len < 1 || e.dim < 1)
    bad(std::string(what) + " shape " + shape_str(e) + ": batch, len and dim must be >= 1");
  if (e.dim != info.context_dim)
    bad(std::string(what) + ".dim = " + std::to_string(e.dim) + ", but the model's context_dim (cross_attention_dim) is " +
        std::to_string(info.context_dim));
  if (e.len > kMaxContextLen)
    bad(std::string(what) + ".len = " + std::to_string(e.len) + " exceeds " + std::to_string(kMaxContextLen) + " tokens");
  if (e.batch != 1 && e.batch != batch)
    bad(std::string(what) + ".batch = " + std::to_string(e.batch) + ": give 1 (used for every image) or batch = " +
        std::to_string(batch));
}

void prepare_text(const ModelInfo& info, const SampleOptions& o, Prepared& p) {
  const bool has_pos = !o.prompt_embeds.empty(), has_neg = !o.negative_prompt_embeds.empty();
  if (info.context_dim == 0) {
    if (has_pos || has_neg)
      bad(std::string(has_pos ? "prompt_embeds" : "negative_prompt_embeds") +
          " given, but this model is not text-conditioned (context_dim 0)");
    return;
  }
  if (!has_pos)
    bad("this model is text-conditioned: give prompt_embeds [batch, len, " + std::to_string(info.context_dim) +
        "] (e.g. CLIP's last_hidden_state)");
  check_embeds("prompt_embeds", o.prompt_embeds, info, o.batch);
  p.req.text_cfg = true;
  p.text = true;
  p.context_len = o.prompt_embeds.len;
  if (has_neg) {
    check_embeds("negative_prompt_embeds", o.negative_prompt_embeds, info, o.batch);
    const TextEmbeddings &a = o.prompt_embeds, &b = o.negative_prompt_embeds;
    if (a.batch != b.batch || a.len != b.len || a.dim != b.dim)
      bad("negative_prompt_embeds " + shape_str(b) + " must have the shape of prompt_embeds " + shape_str(a));
  } else if (o.guidance_scale > 1.0f) {
    bad("guidance_scale = " + std::to_string(o.guidance_scale) +
        " needs negative_prompt_embeds (diffusers uses the embeddings of the empty prompt \"\"); give them, or a "
        "guidance scale <= 1");
  }
}

}  // namespace

Prepared prepare(const Model& model, const SampleOptions& o) {
  const ModelInfo& info = model.info();
  const ModelFile& mf = ModelAccess::impl(model).file;
  Prepared p;
  SampleRequest& r = p.req;
  if (o.batch < 1 || o.batch > kMaxBatch)
    bad("batch = " + std::to_string(o.batch) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  r.batch = o.batch;

  // Sizes: pixels; the UNet runs on latents vae_scale_factor times smaller.
  const bool text = info.context_dim > 0;
  if (o.output != Output::Images && o.output != Output::Latents) bad("output: unknown value " + std::to_string(int(o.output)));
  const bool latents_out = o.output == Output::Latents;
  if (latents_out && !text) bad("output = latents: this model samples pixels, not latents");
  if (text && !latents_out && !info.has_vae)
    bad("this model file has no VAE decoder to decode the latents: request output = latents");
  p.decode = text && !latents_out && info.has_vae;
  const int f = info.has_vae ? info.vae_scale_factor : 1;
  const int img_h = o.height ? o.height : info.image_size, img_w = o.width ? o.width : info.image_size;
  if (img_h == 0 || img_w == 0) bad("the model has no sample_size: set height and width");
  const std::string why = f > 1 ? " (the VAE's " + std::to_string(f) + " x the UNet's " +
                                      std::to_string(info.downsample_factor) + ")"
                                : "";
  check_size("height", img_h, f * info.downsample_factor, why);
  check_size("width", img_w, f * info.downsample_factor, why);
  r.height = img_h / f;
  r.width = img_w / f;
  r.channels = info.in_channels;

  if (!std::isfinite(o.guidance_scale) || o.guidance_scale < 0.0f || o.guidance_scale > kMaxGuidance)
    bad("guidance_scale = " + std::to_string(o.guidance_scale) + " must be a number in [0, 1000]");
  r.guidance_scale = o.guidance_scale;
  if (!std::isfinite(o.eta) || o.eta < 0.0f || o.eta > 1.0f) bad("eta = " + std::to_string(o.eta) + " must be in [0, 1]");
  r.eta = o.eta;
  if (o.steps < 0) bad("steps = " + std::to_string(o.steps) + " must be >= 1 (0: the pipeline default)");

  // Labels: one (broadcast) or one per image; each a class of the model.
  if (info.num_classes == 0) {
    if (!o.class_labels.empty()) bad("class_labels given, but this model is not class-conditional");
  } else {
    if (o.class_labels.empty())
      bad("this model is class-conditional (" + std::to_string(info.num_classes) + " classes): give class_labels");
    if (o.class_labels.size() != 1 && o.class_labels.size() != size_t(o.batch))
      bad("class_labels has " + std::to_string(o.class_labels.size()) + " entries: give 1 or batch = " +
          std::to_string(o.batch));
    for (int32_t l : o.class_labels)
      if (l < 0 || l >= info.num_classes)
        bad("class label " + std::to_string(l) + " out of range [0, " + std::to_string(info.num_classes - 1) + "]");
    r.class_labels.assign(size_t(o.batch), o.class_labels[0]);
    if (o.class_labels.size() > 1) r.class_labels = o.class_labels;
  }
  r.null_class = info.null_class;
  prepare_text(info, o, p);
  const bool class_cfg = r.guidance_scale > 1.0f && !r.class_labels.empty();
  if (class_cfg && r.null_class < 0)
    bad("guidance_scale > 1 needs a null class; this model file has none (re-convert with --null-class)");
  p.model_batch = model_batch(r);
  if (p.model_batch > kMaxBatch)
    bad("batch = " + std::to_string(r.batch) + " with guidance runs " + std::to_string(p.model_batch) +
        " model rows, above the limit " + std::to_string(kMaxBatch) + " (use batch <= " + std::to_string(kMaxBatch / 2) + ")");

  // Scheduler: the model's config with the caller's keys on top; errors in the caller's keys are argument
  // errors, errors in the model's own config are model errors.
  const nlohmann::json sj = merged_scheduler_json(mf, o.scheduler_overrides);
  try {
    p.sched = scheduler_config_from_json(sj, o.scheduler_overrides.empty() ? "model scheduler config"
                                                                           : "scheduler config (with overrides)");
  } catch (const Error& e) {
    if (!o.scheduler_overrides.empty() && e.code() == ErrorCode::InvalidModel) bad(e.what());
    throw;
  }
  switch (o.sampler) {
    case Sampler::Ddpm: r.sampler = SamplerKind::Ddpm; break;
    case Sampler::Ddim: r.sampler = SamplerKind::Ddim; break;
    case Sampler::Default: r.sampler = info.default_sampler == "ddim" ? SamplerKind::Ddim : SamplerKind::Ddpm; break;
    default: bad("sampler: unknown value " + std::to_string(int(o.sampler)));
  }
  r.steps = o.steps ? o.steps : (r.sampler == SamplerKind::Ddim ? 50 : 1000);
  if (r.steps > p.sched.num_train_timesteps)
    bad("steps = " + std::to_string(r.steps) + " exceeds num_train_timesteps = " +
        std::to_string(p.sched.num_train_timesteps));
  if (o.rng != Rng::Philox && o.rng != Rng::Torch) bad("rng: unknown value " + std::to_string(int(o.rng)));
  r.rng = o.rng == Rng::Torch ? RngKind::Torch : RngKind::Philox;
  r.seed = o.seed;
  r.first_sample_index = o.first_sample_index;
  validate_sample_request(p.sched, r, info.out_channels);

  if (latents_out) p.out = ImageShape{r.batch, r.height, r.width, r.channels, true};
  else if (p.decode) p.out = ImageShape{r.batch, img_h, img_w, info.image_channels, false};
  else p.out = ImageShape{r.batch, r.height, r.width, r.channels, false};
  return p;
}

std::vector<float> text_context(const Prepared& p, const SampleOptions& o) {
  if (!p.text) return {};
  const int B = p.req.batch, L = p.context_len, D = o.prompt_embeds.dim;
  const size_t row = size_t(L) * size_t(D);
  const bool guided = guidance_on(p.req);
  std::vector<float> ctx;
  try {
    ctx.resize(size_t(p.model_batch) * row);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory for the text context (" +
                                     bytes_str(uint64_t(p.model_batch) * row * sizeof(float)) + ")");
  }
  auto put = [&](const char* what, const TextEmbeddings& e, size_t first_row) {
    const size_t n = size_t(e.batch) * row;
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(e.data[i]))
        bad(std::string(what) + " contains NaN or infinity at [" + std::to_string(i / row) + ", " +
            std::to_string(i % row / size_t(D)) + ", " + std::to_string(i % size_t(D)) + "]");
    for (int b = 0; b < B; ++b)
      std::copy_n(e.data + (e.batch == 1 ? 0 : size_t(b)) * row, row, ctx.begin() + (first_row + size_t(b)) * row);
  };
  if (guided) {
    put("negative_prompt_embeds", o.negative_prompt_embeds, 0);  // uncond first, as diffusers concatenates
    put("prompt_embeds", o.prompt_embeds, size_t(B));
  } else {
    put("prompt_embeds", o.prompt_embeds, 0);
  }
  return ctx;
}

uint64_t estimate_cpu_bytes(const ModelFile& mf, const Prepared& p) {
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
  if (p.decode) {
    const Graph& vg = mf.vae.graph;
    const MemoryPlan vplan = plan_memory(vg, PlanInputs{r.batch, r.height, r.width, 0}, lim);
    // The decode: its arena + scratch + the latents + raw and mapped images.
    uint64_t dec = sat_add(vplan.arena_elems, vplan.conv_scratch_elems);
    dec = sat_add(dec, sat_mul(per, uint64_t(r.batch) * uint64_t(r.channels)));
    dec = sat_add(dec, sat_mul(vplan.shapes[size_t(vg.output)].numel(), 2));
    elems = std::max(elems, dec);
  }
  return sat_mul(elems, sizeof(float));
}

uint64_t estimate_cuda_bytes(const ModelFile& mf, const Prepared& p) {
  if (mf.tensors.empty()) fail(ErrorCode::InvalidModel, "model file has no tensors");
  const SampleRequest& r = p.req;
  const DType dt = mf.tensors.front().dtype;  // CudaWeights keeps the file's dtype
  const int steps = effective_steps(r);
  const CudaMemoryReport rep = cuda_memory_report(mf, dt, r.batch, r.height, r.width, guidance_on(r), steps,
                                                  p.text ? p.context_len : 0, estimate_limits());
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
  const uint64_t loop = sat_add(sat_sub(rep.total_bytes, rep.weight_bytes), extra);
  const uint64_t dec = p.decode ? sat_sub(rep.vae_total_bytes, rep.weight_bytes) : 0;
  return std::max(loop, dec);
}

}  // namespace api
}  // namespace diffrt
