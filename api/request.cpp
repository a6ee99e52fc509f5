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

std::string dims(std::initializer_list<int> d) {
  std::string s = "[";
  for (int v : d) s += (s.size() > 1 ? ", " : "") + std::to_string(v);
  return s + "]";
}

// Image-to-image and inpainting (SampleOptions::init_image, mask, strength): checks them against the model and the
// request and fills job.image and the request's img2img fields. `img_h` x `img_w` is the output size in pixels.
void prepare_image(const ModelInfo& info, const SampleOptions& o, bool latent, int img_h, int img_w, engine::Job& job) {
  SampleRequest& r = job.req;
  const ImageView& im = o.init_image;
  const MaskView& mk = o.mask;
  if (im.empty()) {
    if (!mk.empty()) bad("mask given without init_image: inpainting repaints an image, give init_image too");
    if (o.strength) bad("strength given without init_image: it applies to image-to-image and inpainting only");
    if (latent && info.in_channels == 2 * info.out_channels + 1)
      bad("init_image and mask: this is an inpainting UNet (in_channels " + std::to_string(info.in_channels) + " = " +
          std::to_string(info.out_channels) + " latent + 1 mask + " + std::to_string(info.out_channels) +
          " masked-image latents): give the image to repaint and its mask");
    return;
  }
  // The image.
  const int want_c = latent ? info.encoder_image_channels : info.in_channels;
  if (latent && !info.has_vae_encoder)
    bad("init_image: this model file has no VAE encoder to encode the image (re-convert the pipeline folder with a "
        "diffrt that stores the VAE's encoder)");
  if (!im.data) bad("init_image.data is null but its shape is " + dims({im.batch, im.height, im.width, im.channels}));
  if (im.batch < 1 || im.height < 1 || im.width < 1 || im.channels < 1)
    bad("init_image shape " + dims({im.batch, im.height, im.width, im.channels}) + ": every dimension must be >= 1");
  if (im.channels != want_c)
    bad("init_image has " + std::to_string(im.channels) + " channels; this model takes " + std::to_string(want_c) +
        (latent ? " (its VAE encoder's input)" : " (its UNet's input)"));
  if (im.height != img_h || im.width != img_w)
    bad("init_image is " + std::to_string(im.height) + "x" + std::to_string(im.width) + " but the output is " +
        std::to_string(img_h) + "x" + std::to_string(img_w) +
        " (height x width): resize the image, or leave height and width unset to use the image's size");
  if (im.batch > r.batch || r.batch % im.batch != 0)
    bad("init_image.batch = " + std::to_string(im.batch) + ": give 1 (used for every image) or a divisor of the " +
        std::to_string(r.batch) + " images the request makes (one per image)");
  engine::JobImage& ji = job.image;
  ji.n = im.batch; ji.h = im.height; ji.w = im.width; ji.c = im.channels;
  const size_t count = size_t(im.batch) * size_t(im.height) * size_t(im.width) * size_t(im.channels);
  try {
    ji.pixels.resize(count);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory for init_image (" + bytes_str(count * sizeof(float)) + ")");
  }
  for (size_t i = 0; i < count; ++i) {
    const float v = im.data[i];
    if (!(std::isfinite(v) && v >= 0.0f && v <= 1.0f)) {
      const size_t c = size_t(im.channels), pix = i / c, hw = size_t(im.height) * size_t(im.width);
      const std::string where = "init_image[" + std::to_string(pix / hw) + ", " + std::to_string(pix % hw / size_t(im.width)) +
                                ", " + std::to_string(pix % size_t(im.width)) + ", " + std::to_string(i % c) + "] (NHWC)";
      if (!std::isfinite(v)) bad(where + " is " + (std::isnan(v) ? "NaN" : "infinite"));
      bad(where + " = " + std::to_string(v) + " is outside [0, 1] (images are in [0, 1], like diffusers' output_type=\"np\")");
    }
    ji.pixels[i] = 2.0f * v - 1.0f;  // VaeImageProcessor.normalize, in float32
  }
  ji.latent = latent;

  // The mask.
  const bool inpaint = !mk.empty();
  const int unet_in = info.in_channels;
  const int lat_c = latent ? info.out_channels : info.in_channels;
  const bool unet9 = latent && unet_in > lat_c;  // 4 latent + 1 mask + 4 masked-image latents
  if (unet9 && unet_in != 2 * lat_c + 1)
    bad("this UNet takes " + std::to_string(unet_in) + " input channels: only " + std::to_string(lat_c) + " (the latents) or " +
        std::to_string(2 * lat_c + 1) + " (inpainting: latents, mask, masked-image latents) are supported");
  if (unet9 && !inpaint)
    bad("mask: this is an inpainting UNet (in_channels " + std::to_string(unet_in) + " = " + std::to_string(lat_c) +
        " latent + 1 mask + " + std::to_string(lat_c) + " masked-image latents): give a mask with the init_image");
  if (inpaint) {
    if (!mk.data) bad("mask.data is null but its shape is " + dims({mk.batch, mk.height, mk.width}));
    if (mk.batch < 1 || mk.height < 1 || mk.width < 1)
      bad("mask shape " + dims({mk.batch, mk.height, mk.width}) + ": every dimension must be >= 1");
    if (mk.height != im.height || mk.width != im.width)
      bad("mask is " + std::to_string(mk.height) + "x" + std::to_string(mk.width) + " but init_image is " +
          std::to_string(im.height) + "x" + std::to_string(im.width) + ": they must have the same size");
    if (mk.batch != im.batch && mk.batch != 1 && im.batch != 1)
      bad("mask.batch = " + std::to_string(mk.batch) + " and init_image.batch = " + std::to_string(im.batch) +
          ": give the same number, or 1 of either (broadcast)");
    const int rows = std::max(mk.batch, im.batch);
    if (rows > r.batch || r.batch % rows != 0)
      bad("mask.batch = " + std::to_string(mk.batch) + ": give 1 (used for every image) or a divisor of the " +
          std::to_string(r.batch) + " images the request makes");
    const size_t mc = size_t(mk.batch) * size_t(mk.height) * size_t(mk.width);
    ji.mask.resize(mc);
    ji.mask_n = mk.batch;
    for (size_t i = 0; i < mc; ++i) {
      const float v = mk.data[i];
      if (!(std::isfinite(v) && v >= 0.0f && v <= 1.0f)) {
        const size_t hw = size_t(mk.height) * size_t(mk.width);
        const std::string where = "mask[" + std::to_string(i / hw) + ", " + std::to_string(i % hw / size_t(mk.width)) + ", " +
                                  std::to_string(i % size_t(mk.width)) + "]";
        if (!std::isfinite(v)) bad(where + " is " + (std::isnan(v) ? "NaN" : "infinite"));
        bad(where + " = " + std::to_string(v) + " is outside [0, 1] (white >= 0.5 = repaint)");
      }
      ji.mask[i] = v < 0.5f ? 0.0f : 1.0f;  // mask_processor's binarize: 0.5 itself repaints
    }
  }

  // Strength: the pipelines' defaults (StableDiffusionImg2ImgPipeline 0.8, StableDiffusionInpaintPipeline 1.0).
  const double s = o.strength ? *o.strength : (inpaint ? 1.0 : 0.8);
  if (!(std::isfinite(s) && s > 0.0 && s <= 1.0))
    bad("strength = " + std::to_string(s) + " must be in (0, 1] (the fraction of the schedule that runs)");
  r.img2img = true;
  r.strength = s;
  const bool strength_max = s == 1.0;  // diffusers' is_strength_max: an exact comparison
  if (!inpaint) {
    r.start_from_image = true;  // img2img starts from add_noise(image, noise, t_start) at any strength
    ji.encode_image = latent;
  } else if (unet9) {
    r.start_from_image = !strength_max;
    r.model_in_channels = unet_in;
    ji.encode_image = !strength_max;
  } else {
    r.start_from_image = !strength_max;
    r.legacy_inpaint_blend = true;
    ji.encode_image = latent;  // the legacy path always encodes the image (return_image_latents)
  }
  if (unet9) r.channels = lat_c;
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
  // Image-to-image: the output size defaults to the init image's.
  const int def_h = o.init_image.data && o.height == 0 ? o.init_image.height : 0;
  const int def_w = o.init_image.data && o.width == 0 ? o.init_image.width : 0;
  if (o.output != Output::Images && o.output != Output::Latents) bad("output: unknown value " + std::to_string(int(o.output)));
  const bool latents_out = o.output == Output::Latents;
  if (latents_out && !latent) bad("output = latents: this model samples pixels, not latents");
  if (latent && !latents_out && !info.has_vae)
    bad("this model file has no VAE decoder to decode the latents: request output = latents");
  job.decode = latent && !latents_out && info.has_vae;
  const int f = info.has_vae ? info.vae_scale_factor : 1;
  const int img_h = o.height ? o.height : def_h ? def_h : info.image_size;
  const int img_w = o.width ? o.width : def_w ? def_w : info.image_size;
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
  if (latent && info.in_channels > info.out_channels && info.in_channels == 2 * info.out_channels + 1)
    r.channels = info.out_channels;  // an inpainting UNet: the sampled latents are its output's channels

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
  prepare_image(info, o, latent, img_h, img_w, job);
  validate_sample_request(job.sched, r, info.out_channels);
  int steps_run = effective_steps(r);
  if (r.img2img) {
    try {
      steps_run = plan_for_request(job.sched, r, info.out_channels).steps;  // refuses int(steps * strength) < 1
    } catch (const Error& e) {
      if (e.code() != ErrorCode::InvalidArgument) throw;
      bad("strength = " + std::to_string(r.strength) + " with " + std::to_string(effective_steps(r)) + " steps: " + e.what());
    }
  }

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
  d.steps = steps_run;
  d.strength = r.img2img ? r.strength : 0.0;
  d.inpainting = !job.image.mask.empty();
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
