#include "sample_request.h"

#include <algorithm>
#include <cctype>

namespace diffrt_triton {

namespace {


// PROMPT / NEGATIVE_PROMPT: one prompt (NUM_IMAGES images of it, as num_images_per_prompt) through the
// model's own CLIP tokenizer and text encoder.
Error set_prompt_text(const diffrt_model_info& info, const RequestInputs& in, diffrt_sample_params* p) {
  if (!in.prompt && !in.negative_prompt) return nullptr;
  const char* which = in.prompt ? "PROMPT" : "NEGATIVE_PROMPT";
  if (info.context_dim == 0) return invalid_arg(std::string(which) + " given, but this model is not text-conditioned");
  if (in.prompt_embeds || in.negative_prompt_embeds)
    return invalid_arg("give PROMPT/NEGATIVE_PROMPT or PROMPT_EMBEDS/NEGATIVE_PROMPT_EMBEDS, not both");
  if (!in.prompt) return invalid_arg("NEGATIVE_PROMPT needs PROMPT");
  if (!info.has_text_encoder)
    return invalid_arg("PROMPT: this model file has no text encoder and tokenizer (convert the pipeline folder with "
                       "its text_encoder/ and tokenizer/, or send PROMPT_EMBEDS)");
  in.prompt_cstr = in.prompt->c_str();
  p->prompts = &in.prompt_cstr;
  p->num_prompts = 1;
  if (in.negative_prompt) {
    in.negative_prompt_cstr = in.negative_prompt->c_str();
    p->negative_prompts = &in.negative_prompt_cstr;
    p->num_negative_prompts = 1;
  }
  return nullptr;
}

// SAMPLER: "default" (or empty) keeps the model's; any other name goes to diffrt, which refuses unknown names
// with the list of supported ones.
Error set_sampler(const std::optional<std::string>& name, diffrt_sample_params* p) {
  if (!name) return nullptr;
  if (name->empty() || *name == "default") return nullptr;
  p->sampler_name = name->c_str();
  return nullptr;
}

Error positive(const char* what, const std::optional<int32_t>& v, const char* hint) {
  if (v && *v < 1) return invalid_arg(std::string(what) + " = " + std::to_string(*v) + " must be >= 1" + hint);
  return nullptr;
}

diffrt_text_embeds view(const std::optional<Embeds>& e) {
  diffrt_text_embeds v{};
  if (e) {
    v.data = e->data.data();
    v.batch = e->batch;
    v.len = e->len;
    v.dim = e->dim;
  }
  return v;
}

}  // namespace

Error make_sample_params(const diffrt_model_info& info, const ModelConfig& cfg, const RequestInputs& in,
                         diffrt_sample_params* params, ImageShape* shape) {
  diffrt_sample_params p;
  diffrt_params_init(&p);
  DIFFRT_TRITON_TRY(set_prompt_text(info, in, &p));
  DIFFRT_TRITON_TRY(set_sampler(in.sampler, &p));
  if (in.karras) p.karras = *in.karras ? 1 : 0;
  DIFFRT_TRITON_TRY(positive("STEPS", in.steps, " (leave STEPS out for the sampler's default)"));
  DIFFRT_TRITON_TRY(positive("NUM_IMAGES", in.num_images, ""));
  DIFFRT_TRITON_TRY(positive("HEIGHT", in.height, " (leave HEIGHT out for the model's size)"));
  DIFFRT_TRITON_TRY(positive("WIDTH", in.width, " (leave WIDTH out for the model's size)"));
  if (in.steps) p.steps = *in.steps;

  // The batch: NUM_IMAGES, else that of the prompt embeddings or of the class labels (as `diffrt
  // sample` takes the batch of its embeddings), else 1.
  int n = 1;
  if (in.num_images) n = *in.num_images;
  else if (in.prompt_embeds && in.prompt_embeds->batch > 1) n = in.prompt_embeds->batch;
  else if (in.class_labels && in.class_labels->size() > 1) n = int(std::min<size_t>(in.class_labels->size(), 1 << 30));
  if (n > cfg.max_num_images)
    return invalid_arg("this request asks for " + std::to_string(n) + " images; this model serves at most " +
                       std::to_string(cfg.max_num_images) + " per request (config parameter max_num_images)");
  p.batch = n;

  if (in.seed) p.seed = *in.seed;
  p.rng = diffrt_rng(cfg.rng);
  // Guidance: the pipeline default, as `diffrt sample`: 7.5 for text-conditioned models
  // (StableDiffusionPipeline's), else 1 (off).
  p.guidance_scale = in.guidance_scale ? *in.guidance_scale : (info.context_dim > 0 ? 7.5f : 1.0f);
  if (in.height) p.height = *in.height;
  if (in.width) p.width = *in.width;
  if (in.class_labels) {
    p.class_labels = in.class_labels->data();
    p.num_class_labels = in.class_labels->size();
  }
  p.prompt_embeds = view(in.prompt_embeds);
  p.negative_prompt_embeds = view(in.negative_prompt_embeds);
  p.output = DIFFRT_OUTPUT_IMAGES;
  // Image-to-image / inpainting: diffrt checks them (errors name init_image, mask, strength).
  if ((in.mask || in.strength) && !in.init_image)
    return invalid_arg(std::string(in.mask ? "MASK" : "STRENGTH") + " needs INIT_IMAGE (image-to-image and inpainting)");
  if (in.init_image) {
    const ImageTensor& t = *in.init_image;
    p.init_image = t.data.data();
    p.init_image_batch = t.n;
    p.init_image_height = t.h;
    p.init_image_width = t.w;
    p.init_image_channels = t.c;
    // The output size is the image's unless HEIGHT/WIDTH say otherwise (then they must match it).
    if (!in.height) p.height = t.h;
    if (!in.width) p.width = t.w;
    // One image per output when NUM_IMAGES and the other batch sources are absent.
    if (!in.num_images && n == 1 && t.n > 1 && t.n <= cfg.max_num_images) p.batch = t.n;
  }
  if (in.mask) {
    p.mask = in.mask->data.data();
    p.mask_batch = in.mask->n;
    p.mask_height = in.mask->h;
    p.mask_width = in.mask->w;
  }
  if (in.strength) {
    if (!(*in.strength > 0.0f && *in.strength <= 1.0f))
      return invalid_arg("STRENGTH = " + std::to_string(*in.strength) + " must be in (0, 1]");
    p.strength = double(*in.strength);
  }

  shape->n = p.batch;
  shape->h = p.height ? p.height : info.image_size;
  shape->w = p.width ? p.width : info.image_size;
  shape->c = info.image_channels;
  *params = p;
  return nullptr;
}

}  // namespace diffrt_triton
