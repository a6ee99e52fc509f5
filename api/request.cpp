// Request validation of the embedding API (contract in api_internal.h): SampleOptions -> an engine Job. Every
// front end (the diffrt command, the C API, the serving backend) goes through it, so they accept and refuse the
// same requests; every refusal is Error(InvalidArgument) naming the field. Tested by tests/api_test.cpp,
// tests/api_text_test.cpp and the CLI tests.
#include <algorithm>
#include <cmath>
#include <new>

#include "api/api_internal.h"
#include "base/json_fields.h"

namespace diffrt {
namespace api {

void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

namespace {

constexpr size_t kMaxSchedulerJsonBytes = 1 << 20;

nlohmann::json caller_json(const std::string& text, const char* what) {
  if (text.size() > kMaxSchedulerJsonBytes) bad(std::string(what) + ": larger than 1 MiB");
  nlohmann::json j;
  try {
    j = parse_scheduler_config_text(text, what);  // Python's json: -Infinity (lambda_min_clipped) is valid
  } catch (const Error& e) {
    bad(e.what());
  }
  if (!j.is_object()) bad(std::string(what) + ": expected a JSON object, got " + std::string(j.type_name()));
  return j;
}

}  // namespace

// diffusers' scheduler selection (see diffrt.hpp SampleOptions): the base config is the caller's whole config
// (`Class.from_config(file)`) or the model's; a sampler name makes it `NAME.from_config(base, **overrides)`,
// Karras sigmas and the caller's overrides are from_config keyword arguments. Errors in the caller's inputs are
// argument errors; errors in the model's own config are model errors.
SchedulerConfig request_scheduler(const ModelFile& mf, const SampleOptions& o) {
  SchedulerConfig base;
  if (!o.scheduler_config.empty()) {
    const nlohmann::json j = caller_json(o.scheduler_config, "scheduler config");
    try {
      base = scheduler_config_from_json(j, "scheduler config");
    } catch (const Error& e) {
      bad(e.what());
    }
  } else {
    base = scheduler_config_from_json(mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object(),
                                      "model scheduler config");
  }
  SchedulerClass target = base.klass;
  nlohmann::json kwargs = nlohmann::json::object();
  if (!o.sampler.empty()) {
    const SamplerName n = parse_sampler_name(o.sampler);  // unknown names: InvalidArgument listing every name
    target = n.klass;
    kwargs = nlohmann::json::parse(n.overrides_json);
  }
  if (o.karras) {
    if (!scheduler_class_takes(target, "use_karras_sigmas"))
      bad(std::string("karras: ") + scheduler_class_name(target) + " has no Karras sigmas; they apply to dpmpp-2m, "
          "dpmpp-2m-sde, euler, heun and unipc");
    kwargs["use_karras_sigmas"] = true;
  }
  if (!o.scheduler_overrides.empty()) {
    const nlohmann::json ov = caller_json(o.scheduler_overrides, "scheduler config override");
    for (auto it = ov.begin(); it != ov.end(); ++it) kwargs[it.key()] = it.value();
  }
  if (target == base.klass && kwargs.empty()) return base;
  try {
    return resolve_scheduler_config(base, target, kwargs, "scheduler config");
  } catch (const Error& e) {
    if (e.code() == ErrorCode::InvalidModel) bad(e.what());
    throw;
  }
}

namespace {

void check_size(const char* what, int v, int factor, const std::string& factor_why) {
  if (v < 1 || v > 8192) bad(std::string(what) + " = " + std::to_string(v) + " out of range: must be in [1, 8192]");
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

// The images a request makes: prompts.size() * batch with text prompts, else batch.
int image_count(const SampleOptions& o) {
  if (o.batch < 1 || o.batch > kMaxBatch)
    bad("batch = " + std::to_string(o.batch) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  if (o.prompts.empty()) return o.batch;
  if (o.prompts.size() > size_t(kMaxBatch) || o.prompts.size() * size_t(o.batch) > size_t(kMaxBatch))
    bad(std::to_string(o.prompts.size()) + " prompts x batch " + std::to_string(o.batch) + " images per prompt exceeds " +
        std::to_string(kMaxBatch) + " images");
  return int(o.prompts.size()) * o.batch;
}

// Text conditioning: which inputs the request gives, checked against the model (structure only).
void prepare_text(const ModelInfo& info, const SampleOptions& o, int images, engine::Job& job) {
  const bool has_pos = !o.prompt_embeds.empty(), has_neg = !o.negative_prompt_embeds.empty();
  const bool prompted = !o.prompts.empty();
  if (info.context_dim == 0) {
    if (has_pos || has_neg)
      bad(std::string(has_pos ? "prompt_embeds" : "negative_prompt_embeds") +
          " given, but this model is not text-conditioned (context_dim 0)");
    if (prompted || !o.negative_prompts.empty()) bad("prompts given, but this model is not text-conditioned");
    return;
  }
  if (prompted && (has_pos || has_neg)) bad("give prompts or prompt_embeds, not both");
  if (!o.negative_prompts.empty() && !prompted)
    bad("negative_prompts need prompts (with prompt_embeds, give negative_prompt_embeds)");
  job.req.text_cfg = true;
  job.text = true;
  if (prompted) {
    if (!info.has_text_encoder)
      bad("prompts: this model file has no text encoder and tokenizer (convert the pipeline folder with its "
          "text_encoder/ and tokenizer/, or give prompt_embeds)");
    if (o.negative_prompts.size() > 1 && o.negative_prompts.size() != o.prompts.size())
      bad(std::to_string(o.negative_prompts.size()) + " negative prompts for " + std::to_string(o.prompts.size()) +
          " prompts (give one, or one per prompt)");
    return;
  }
  if (!has_pos)
    bad(info.has_text_encoder ? "this model is text-conditioned: give prompts (or prompt_embeds)"
                              : "this model is text-conditioned: give prompt_embeds [batch, len, " +
                                    std::to_string(info.context_dim) + "] (e.g. CLIP's last_hidden_state; this model "
                                    "file has no text encoder for prompts)");
  check_embeds("prompt_embeds", o.prompt_embeds, info, images);
  job.context_len = o.prompt_embeds.len;
  if (has_neg) {
    check_embeds("negative_prompt_embeds", o.negative_prompt_embeds, info, images);
    const TextEmbeddings &a = o.prompt_embeds, &b = o.negative_prompt_embeds;
    if (a.batch != b.batch || a.len != b.len || a.dim != b.dim)
      bad("negative_prompt_embeds " + shape_str(b) + " must have the shape of prompt_embeds " + shape_str(a));
  } else if (o.guidance_scale > 1.0f) {
    bad("guidance_scale = " + std::to_string(o.guidance_scale) +
        " needs negative_prompt_embeds (the negative prompt embeddings; diffusers uses the embeddings of the empty "
        "prompt \"\"); give them, or a guidance scale <= 1");
  }
}

// encoder_hidden_states of every model row, [model_batch, len, dim]: [negative x B; positive x B] with guidance
// (StableDiffusionPipeline's order), else [positive x B]; one embedding row is broadcast to the batch. Checks
// every value is finite.
void build_context(const SampleOptions& o, engine::Job& job) {
  const int B = job.req.batch, L = job.context_len, D = o.prompt_embeds.dim;
  const size_t row = size_t(L) * size_t(D);
  const bool guided = guidance_on(job.req);
  std::vector<float>& ctx = job.context;
  try {
    ctx.resize(size_t(job.model_batch) * row);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory for the text context (" +
                                     bytes_str(uint64_t(job.model_batch) * row * sizeof(float)) + ")");
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
}

// The text context of a prompted request, as StableDiffusionPipeline.encode_prompt: the negative prompts are
// encoded only with guidance, each prompt's images adjacent.
void encode_context(const ModelFile& mf, const SampleOptions& o, const TextEncodeFn& encode, engine::Job& job) {
  const bool guided = guidance_on(job.req);
  const PromptEmbeds pe = encode_prompts(mf, o.prompts, o.negative_prompts, guided, o.batch, encode);
  if (pe.positive.batch != job.req.batch)
    fail(ErrorCode::Internal, "prompt encoding gave " + std::to_string(pe.positive.batch) + " rows for " +
                                  std::to_string(job.req.batch) + " images");
  job.context_len = pe.positive.len;
  job.context = model_context(mf.graph, pe.positive, guided ? &pe.negative : nullptr, guided);
}

}  // namespace

BusyScope::BusyScope(std::atomic<bool>& flag) : flag_(flag) {
  bool expected = false;
  if (!flag_.compare_exchange_strong(expected, true, std::memory_order_acquire))
    bad("session is busy: another call on this session is running (a session serves one call at a time; use one "
        "session per thread, and do not re-enter it from its progress callback)");
}

Prepared prepare(const Model& model, const SampleOptions& o) {
  const ModelInfo& info = model.info();
  const ModelFile& mf = ModelAccess::file(model);
  Prepared p;
  engine::Job& job = p.job;
  SampleRequest& r = job.req;
  r.batch = image_count(o);

  // Sizes: pixels; the denoiser runs on latents vae_scale_factor times smaller.
  const bool text = info.context_dim > 0;
  const bool latent = text || info.has_vae;  // Stable Diffusion, DiT
  if (o.output != Output::Images && o.output != Output::Latents) bad("output: unknown value " + std::to_string(int(o.output)));
  const bool latents_out = o.output == Output::Latents;
  if (latents_out && !latent) bad("output = latents: this model samples pixels, not latents");
  if (latent && !latents_out && !info.has_vae)
    bad("this model file has no VAE decoder to decode the latents: request output = latents");
  job.decode = latent && !latents_out && info.has_vae;
  const int f = info.has_vae ? info.vae_scale_factor : 1;
  const int img_h = o.height ? o.height : info.image_size, img_w = o.width ? o.width : info.image_size;
  if (img_h == 0 || img_w == 0) bad("the model has no sample_size: set height and width");
  const std::string why = f > 1 ? " (the VAE's " + std::to_string(f) + " x the UNet's " +
                                      std::to_string(info.downsample_factor) +
                                      "): pixel sizes must be multiples of the VAE's factor times the UNet's"
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
    if (o.class_labels.size() != 1 && o.class_labels.size() != size_t(r.batch))
      bad("class_labels has " + std::to_string(o.class_labels.size()) + " entries: give 1 or batch = " +
          std::to_string(r.batch));
    for (int32_t l : o.class_labels)
      if (l < 0 || l >= info.num_classes)
        bad("class label " + std::to_string(l) + " out of range [0, " + std::to_string(info.num_classes - 1) + "]");
    r.class_labels.assign(size_t(r.batch), o.class_labels[0]);
    if (o.class_labels.size() > 1) r.class_labels = o.class_labels;
  }
  r.null_class = info.null_class;
  r.cfg_order = mf.pipeline.cfg_order;  // DiTPipeline batches [cond; uncond]
  prepare_text(info, o, r.batch, job);
  const bool class_cfg = r.guidance_scale > 1.0f && !r.class_labels.empty();
  if (class_cfg && r.null_class < 0)
    bad("guidance_scale > 1 needs a null class; this model file has none (re-convert with --null-class)");
  job.model_batch = model_batch(r);
  if (job.model_batch > kMaxBatch)
    bad("batch = " + std::to_string(r.batch) + " with guidance runs " + std::to_string(job.model_batch) +
        " model rows, above the limit " + std::to_string(kMaxBatch) + " (use batch <= " + std::to_string(kMaxBatch / 2) + ")");

  job.sched = request_scheduler(mf, o);
  r.sampler = job.sched.klass;
  r.steps = o.steps;  // 0: the class's pipeline default (effective_steps)
  if (effective_steps(r) > job.sched.num_train_timesteps)
    bad("steps = " + std::to_string(effective_steps(r)) + " exceeds num_train_timesteps = " +
        std::to_string(job.sched.num_train_timesteps));
  if (o.rng != Rng::Philox && o.rng != Rng::Torch) bad("rng: unknown value " + std::to_string(int(o.rng)));
  r.rng = o.rng == Rng::Torch ? RngKind::Torch : RngKind::Philox;
  r.seed = o.seed;
  r.first_sample_index = o.first_sample_index;
  validate_sample_request(job.sched, r, info.out_channels);

  if (latents_out) p.out = ImageShape{r.batch, r.height, r.width, r.channels, true};
  else if (job.decode) p.out = ImageShape{r.batch, img_h, img_w, info.image_channels, false};
  else p.out = ImageShape{r.batch, r.height, r.width, r.channels, false};
  job.out_batch = r.batch;
  job.out_h = job.decode ? img_h : r.height;
  job.out_w = job.decode ? img_w : r.width;
  job.out_c = job.decode ? info.image_channels : r.channels;

  SampleDescription& d = p.description;
  d.sampler = sampler_display_name(job.sched);
  d.scheduler = describe_scheduler(job.sched);
  d.steps = effective_steps(r);
  d.images = r.batch;
  d.guidance_scale = r.guidance_scale;
  d.scheduler_config = scheduler_config_to_json(job.sched).dump();

  if (job.text && !o.prompts.empty()) {
    job.context_len = mf.tokenizer.max_length;  // what encoding will give
    // encode_prompts runs every prompt, and with guidance every negative prompt, in one batch.
    job.text_rows = int(o.prompts.size()) * (guidance_on(r) ? 2 : 1);
  }
  return p;
}

void fill_text_context(const Model& model, const SampleOptions& o, const TextEncodeFn& encode, engine::Job& job) {
  if (!job.text) return;
  if (o.prompts.empty()) build_context(o, job);
  else encode_context(ModelAccess::file(model), o, encode, job);
}

}  // namespace api
}  // namespace diffrt
