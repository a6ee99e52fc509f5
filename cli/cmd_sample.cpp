// diffrt sample: the whole sampling loop from noise (or, with --init-image, from a noised image: image-to-image and
// inpainting) to images (PNG grid or diffusers-style .npy), through the C++ API's Session (the one engine path). This
// file turns flags into SampleOptions and writes the result. Tested by tests/cli/*_test.sh (img2img_cli_test.sh for
// --init-image, --strength and --mask).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "api/diffrt.hpp"
#include "base/atomic_file.h"
#include "base/error.h"
#include "base/image_png.h"
#include "base/json_fields.h"
#include "base/npy.h"
#include "cli/commands.h"
#include "cli/image_input.h"
#include "cli/progress.h"
#include "model/scheduler_config.h"

namespace diffrt::cli {

namespace {

struct SampleOpts {
  std::string model, scheduler_config, sampler, rng = "philox", output, device = "auto", classes;
  std::string prompt_embeds, negative_prompt_embeds, output_type = "image";
  std::string timestep_spacing, prediction_type, variance_type;
  std::vector<std::string> set, prompts, negative_prompts;
  int steps = 0, batch = 1, height = 0, width = 0, threads = 0, grid_cols = 0;
  double eta = 0.0, guidance = -1.0;  // < 0: the pipeline default (7.5 text-conditioned, else 1)
  std::string seed;
  bool quiet = false, karras = false;
  std::string init_image, mask;
  double strength = -1.0;  // < 0: unset (the pipelines' defaults: 0.8 img2img, 1.0 with --mask)
};

// The flags that override single scheduler config keys, as one JSON object (applied after --scheduler-config).
nlohmann::json scheduler_overrides(const SampleOpts& o) {
  nlohmann::json j = nlohmann::json::object();
  if (!o.timestep_spacing.empty()) j["timestep_spacing"] = o.timestep_spacing;
  if (!o.prediction_type.empty()) j["prediction_type"] = o.prediction_type;
  if (!o.variance_type.empty()) j["variance_type"] = o.variance_type;
  for (const auto& kv : o.set) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      fail(ErrorCode::InvalidArgument, "--set expects key=value (value in JSON), got '" + kv + "'");
    std::string value = kv.substr(eq + 1);
    nlohmann::json v;
    try { v = nlohmann::json::parse(value); } catch (const std::exception&) { v = value; }  // bare words are strings
    j[kv.substr(0, eq)] = v;
  }
  return j;
}

// "--class 3", "--class 1,4,7" or "--class all" -> per-sample labels (cycling over the list).
std::vector<int32_t> parse_classes(const std::string& spec, const ModelInfo& info, int batch) {
  const int nc = info.num_classes, null_class = info.null_class;
  if (spec.empty()) return {};
  if (!nc) fail(ErrorCode::InvalidArgument, "--class: this model is not class-conditional");
  std::vector<int32_t> list;
  if (spec == "all") {
    for (int c = 0; c < nc; ++c)
      if (c != null_class) list.push_back(c);
  } else {
    size_t pos = 0;
    while (pos <= spec.size()) {
      size_t comma = spec.find(',', pos);
      std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 9)
        fail(ErrorCode::InvalidArgument, "--class: expected class indices or 'all', got '" + spec + "'");
      int v = std::stoi(item);
      if (v >= nc) fail(ErrorCode::InvalidArgument, "--class: " + item + " is not a class of this model (0.." + std::to_string(nc - 1) + ")");
      list.push_back(v);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) labels[size_t(i)] = list[size_t(i) % list.size()];
  return labels;
}

// A float32 .npy of text embeddings [B, L, D]; errors name the file.
struct Embeds {
  std::vector<float> data;
  int batch = 0, len = 0, dim = 0;
  TextEmbeddings view() const { return {data.data(), batch, len, dim}; }
};
Embeds read_embeds(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.type != NpyType::F32 || a.shape.size() != 3 || a.shape[0] < 1 || a.shape[1] < 1 || a.shape[2] < 1)
    fail(ErrorCode::InvalidArgument, path + ": expected float32 text embeddings [batch, tokens, dim]");
  if (a.shape[0] > kMaxBatch || a.shape[1] > 65536 || a.shape[2] > 65536)
    fail(ErrorCode::InvalidArgument, path + ": embedding shape out of range");
  Embeds e;
  e.batch = int(a.shape[0]); e.len = int(a.shape[1]); e.dim = int(a.shape[2]);
  e.data = a.as_f32();
  return e;
}

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto o = std::make_shared<SampleOpts>();
  CLI::App* c = app.add_subcommand(
      "sample", "Sample images: noise -> sampler loop (DDPM, DDIM, PNDM, DPM-Solver++, Euler, Heun, UniPC, LCM) [-> VAE "
      "decode for latent models] -> PNG grid or .npy");
  c->add_option("-m,--model", o->model, "model file (.drt)")->required();
  c->add_option("-o,--output", o->output,
                "output: .png (a grid when batch > 1; seed and settings in its metadata) or .npy "
                "(NHWC float32 in [0, 1], like diffusers output_type=\"np\"; NCHW latents with --output-type latent)")
      ->required();
  c->add_option("--prompt-embeds", o->prompt_embeds,
                "text-conditioned models: prompt embeddings .npy float32 [B, L, D] (e.g. CLIP's last_hidden_state, "
                "L = 77); the batch is theirs");
  c->add_option("--negative-prompt-embeds", o->negative_prompt_embeds,
                "text-conditioned models: embeddings of the negative prompt, same shape (needed with guidance; diffusers "
                "uses the empty prompt's)");
  c->add_option("--prompt", o->prompts,
                "text-conditioned models converted with their text encoder: the prompt (repeatable: one image batch "
                "per prompt; -b is then the number of images per prompt, as num_images_per_prompt)");
  c->add_option("--negative-prompt", o->negative_prompts,
                "with --prompt and guidance: the negative prompt (once for all prompts, or once per prompt; "
                "default \"\" as StableDiffusionPipeline)");
  c->add_option("--output-type", o->output_type,
                "image (decode latents with the VAE) or latent (write the final latents as NCHW .npy, like "
                "output_type=\"latent\")")->check(CLI::IsMember({"image", "latent"}))->capture_default_str();
  c->add_option("--sampler", o->sampler,
                "sampler: ddpm ddim pndm dpmpp-2m dpmpp-2m-sde euler euler-a heun unipc lcm, or a diffusers scheduler "
                "class name; runs NAME.from_config(the model's scheduler config, or --scheduler-config's), keeping its "
                "betas, spacing and offset (default: the model's own scheduler, see diffrt info)");
  c->add_flag("--karras", o->karras, "Karras sigmas (use_karras_sigmas=True): dpmpp-2m, dpmpp-2m-sde, euler, heun, unipc");
  CLI::Option* steps_opt = c->add_option("--steps", o->steps, "denoising steps (default: the pipeline's: 1000 for ddpm, 4 for lcm, else 50)");
  c->add_option("--eta", o->eta, "DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise (ddim only)")->capture_default_str();
  c->add_option("--seed", o->seed, "random seed in [0, 2^64-1] (default: random; the seed used is printed and stored in the PNG)");
  c->add_option("--rng", o->rng,
                "noise generator: philox (counter-based; the same image per seed and sample index whatever the "
                "batch or device) or torch (reproduces torch.randn with a seeded CPU generator, as diffusers' pipelines draw it)")
      ->check(CLI::IsMember({"philox", "torch"}))->capture_default_str();
  CLI::Option* batch_opt = c->add_option("-b,--batch", o->batch, "number of images (with an --init-image batch and no -b: one per image)")->capture_default_str();
  c->add_option("--class", o->classes, "class-conditional models: a class index, a comma-separated list (cycled over the batch) or 'all'");
  c->add_option("--guidance-scale", o->guidance,
                "classifier-free guidance scale s: eps = eps_uncond + s*(eps_cond - eps_uncond); <= 1 disables guidance "
                "(no unconditional pass). Default: 7.5 for text-conditioned models (as StableDiffusionPipeline), else 1");
  c->add_option("-H,--height", o->height,
                "image height in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("-W,--width", o->width,
                "image width in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("--scheduler-config", o->scheduler_config,
                "a whole diffusers scheduler_config.json replacing the model's: taken as <_class_name>.from_config(file), "
                "keys it lacks get that class's defaults (--sampler then converts it)");
  c->add_option("--timestep-spacing", o->timestep_spacing, "override: leading, linspace or trailing");
  c->add_option("--prediction-type", o->prediction_type, "override: epsilon, sample or v_prediction");
  c->add_option("--variance-type", o->variance_type, "override (DDPM): fixed_small, fixed_small_log, fixed_large, learned, learned_range");
  c->add_option("--set", o->set, "override any scheduler config field: key=value (JSON value), repeatable; applied last, "
                "as from_config keyword arguments");
  CLI::Option* init_opt = c->add_option(
      "--init-image", o->init_image,
      "image-to-image: the starting image, a .png (8-bit RGB or grey; resized with Pillow's LANCZOS) or an .npy (float32 "
      "NHWC [N,H,W,C] in [0, 1]; resized with torch's nearest), to -H/-W or its own size floored to the VAE factor, as "
      "diffusers' VaeImageProcessor. Latent models VAE-encode it (a posterior sample from the request's generator); "
      "pixel models noise it directly (SDEdit). One image for every output, or one per output");
  CLI::Option* strength_opt = c->add_option(
      "--strength", o->strength,
      "with --init-image: the fraction of the schedule that runs, in (0, 1]: int(steps * strength) steps from a noised "
      "image (default 0.8, StableDiffusionImg2ImgPipeline's; 1.0 with --mask, StableDiffusionInpaintPipeline's)");
  CLI::Option* mask_opt = c->add_option(
      "--mask", o->mask,
      "inpainting, with --init-image: white (>= 0.5) = repaint; a .png (grey or RGB, converted to L after the resize) "
      "or an .npy (float32 [N,H,W,1], [N,H,W] or [H,W] in [0, 1]); binarised at 0.5 and nearest-downsampled to the "
      "latents. 9-channel inpainting UNets get it as an input; other models re-impose the unmasked region every step");
  c->add_option("--grid-cols", o->grid_cols, "PNG grid columns (default: number of classes with --class all, else near-square)");
  c->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no progress bar or notices (the seed is still printed)");
  c->callback([o, steps_opt, init_opt, strength_opt, mask_opt, batch_opt]() {
    if (steps_opt->count() && o->steps < 1) fail(ErrorCode::InvalidArgument, "--steps must be >= 1");
    if (o->threads < 0) fail(ErrorCode::InvalidArgument, "--threads must be >= 0");
    const bool png = ends_with(o->output, ".png"), npy = ends_with(o->output, ".npy");
    if (!png && !npy) fail(ErrorCode::InvalidArgument, "-o: output must end in .png or .npy, got '" + o->output + "'");
    if (o->batch < 1 || o->batch > kMaxBatch) fail(ErrorCode::InvalidArgument, "--batch must be in [1, 4096]");
    if (!(o->guidance == o->guidance) || o->guidance > 1000 || (o->guidance < 0 && o->guidance != -1.0))
      fail(ErrorCode::InvalidArgument, "--guidance-scale must be a number in [0, 1000]");
    if (!(o->eta >= 0 && o->eta <= 10)) fail(ErrorCode::InvalidArgument, "--eta must be in [0, 10]");
    const bool want_latents = o->output_type == "latent";
    if (want_latents && !npy) fail(ErrorCode::InvalidArgument, "--output-type latent writes .npy only");
    const bool prompted = !o->prompts.empty();
    if (prompted && (!o->prompt_embeds.empty() || !o->negative_prompt_embeds.empty()))
      fail(ErrorCode::InvalidArgument, "give --prompt or --prompt-embeds, not both");
    if (!o->negative_prompts.empty() && !prompted)
      fail(ErrorCode::InvalidArgument, "--negative-prompt needs --prompt (with --prompt-embeds, give --negative-prompt-embeds)");

    if (!o->sampler.empty()) {
      try {
        (void)parse_sampler_name(o->sampler);
      } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, std::string("--sampler: ") + e.what());
      }
    }
    if (strength_opt->count() && !init_opt->count())
      fail(ErrorCode::InvalidArgument, "--strength needs --init-image (it applies to image-to-image and inpainting)");
    if (mask_opt->count() && !init_opt->count())
      fail(ErrorCode::InvalidArgument, "--mask needs --init-image (inpainting repaints an image)");
    if (strength_opt->count() && !(o->strength > 0.0 && o->strength <= 1.0))
      fail(ErrorCode::InvalidArgument, "--strength must be in (0, 1], got " + std::to_string(o->strength));

    const std::string device = resolve_device(o->device, o->quiet);
    const std::shared_ptr<const Model> model = Model::load(o->model);
    const ModelInfo& info = model->info();
    const bool text_model = info.context_dim > 0;
    const bool latent_model = text_model || info.has_vae;  // SD, DiT
    if (!want_latents && latent_model && !info.has_vae)
      fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder: use --output-type latent");
    if (text_model && !prompted && o->prompt_embeds.empty())
      fail(ErrorCode::InvalidArgument, info.has_text_encoder
                                           ? "this model is text-conditioned: give --prompt (or --prompt-embeds)"
                                           : "this model is text-conditioned: give --prompt-embeds (this model file has "
                                             "no text encoder for --prompt)");
    if (!text_model && (!o->prompt_embeds.empty() || !o->negative_prompt_embeds.empty()))
      fail(ErrorCode::InvalidArgument, "--prompt-embeds: this model is not text-conditioned");
    if (!text_model && prompted) fail(ErrorCode::InvalidArgument, "--prompt: this model is not text-conditioned");
    if (prompted && !info.has_text_encoder)
      fail(ErrorCode::InvalidArgument, "--prompt: this model file has no text encoder and tokenizer (convert the pipeline "
                                       "folder with its text_encoder/ and tokenizer/, or give --prompt-embeds)");
    if (!latent_model && want_latents) fail(ErrorCode::InvalidArgument, "--output-type latent: this model has no latents");

    SampleOptions so;
    so.sampler = o->sampler;
    so.karras = o->karras;
    so.steps = o->steps;
    so.eta = float(o->eta);
    so.seed = parse_seed(o->seed);
    so.rng = o->rng == "torch" ? Rng::Torch : Rng::Philox;
    so.batch = o->batch;
    so.height = o->height;
    so.width = o->width;
    so.guidance_scale = float(o->guidance >= 0 ? o->guidance : info.default_guidance_scale);
    so.output = want_latents ? Output::Latents : Output::Images;
    if (!o->scheduler_config.empty()) {
      so.scheduler_config = read_file_bytes(o->scheduler_config, 1 << 20);
      try {  // checked here too, so that errors name the file
        const nlohmann::json f = parse_scheduler_config_text(so.scheduler_config, o->scheduler_config);
        if (!f.is_object()) fail(ErrorCode::InvalidArgument, o->scheduler_config + ": expected a JSON object");
        (void)scheduler_config_from_json(f, o->scheduler_config);
      } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, e.what());
      }
    }
    const nlohmann::json overrides = scheduler_overrides(*o);
    if (!overrides.empty()) so.scheduler_overrides = overrides.dump();
    so.class_labels = parse_classes(o->classes, info, o->batch);
    if (info.num_classes && so.class_labels.empty())
      fail(ErrorCode::InvalidArgument, "this model is class-conditional: give --class (an index, a list or 'all')");
    Embeds pos, neg;
    if (prompted) {
      so.prompts = o->prompts;
      so.negative_prompts = o->negative_prompts;
    } else if (text_model) {
      pos = read_embeds(o->prompt_embeds);
      if (!o->negative_prompt_embeds.empty()) neg = read_embeds(o->negative_prompt_embeds);
      if (o->batch != 1 && o->batch != pos.batch)
        fail(ErrorCode::InvalidArgument, "--batch " + std::to_string(o->batch) + " but the prompt embeddings hold " +
                                             std::to_string(pos.batch) + " prompts (the batch is theirs)");
      so.batch = pos.batch;
      so.prompt_embeds = pos.view();
      if (!neg.data.empty()) so.negative_prompt_embeds = neg.view();
    }
    if (so.guidance_scale > 1 && !text_model && info.num_classes && info.null_class < 0)
      fail(ErrorCode::InvalidArgument, "--guidance-scale > 1 needs a null class; this model file has none "
                                       "(re-convert with --null-class)");

    // Image-to-image / inpainting: the images in [0, 1] after VaeImageProcessor's resize (the API applies 2x - 1).
    ImageInput init, mask;
    if (init_opt->count()) {
      const int vsf = latent_model ? info.vae_scale_factor : 1;
      const int ch = latent_model ? info.encoder_image_channels : info.in_channels;
      if (latent_model && !info.has_vae_encoder)
        fail(ErrorCode::InvalidArgument, "--init-image: this model file has no VAE encoder (re-convert the pipeline "
                                         "folder with this diffrt, which stores the VAE's encoder)");
      init = load_image_input(o->init_image, "--init-image", ch, vsf, o->height, o->width);
      for (float& v : init.images.data) v = std::min(std::max((v + 1.0f) * 0.5f, 0.0f), 1.0f);
      if (!o->quiet && !init.notice.empty()) std::fprintf(stderr, "--init-image: %s\n", init.notice.c_str());
      so.init_image = {init.images.data.data(), init.images.n, init.images.h, init.images.w, init.images.c};
      if (o->height == 0) so.height = init.images.h;
      if (o->width == 0) so.width = init.images.w;
      if (mask_opt->count()) {
        mask = load_mask_input(o->mask, "--mask", vsf, init.images.h, init.images.w);
        if (!o->quiet && !mask.notice.empty()) std::fprintf(stderr, "--mask: %s\n", mask.notice.c_str());
        so.mask = {mask.images.data.data(), mask.images.n, mask.images.h, mask.images.w};
      }
      if (strength_opt->count()) so.strength = o->strength;
      // The image's batch is the output's with class labels or noise only (pixel models): one image per output.
      if (!text_model && o->batch == 1 && init.images.n > 1 && !batch_opt->count()) {
        so.batch = init.images.n;
        so.class_labels = parse_classes(o->classes, info, so.batch);
      }
    }

    SessionOptions sopt;
    sopt.device = device == "cuda" ? Device::Cuda : Device::Cpu;
    sopt.threads = o->threads;
    Session session(model, sopt);
    const SampleDescription d = session.describe(so);
    const ImageShape shape = session.output_shape(so);

    std::printf("seed: %llu\n", (unsigned long long)so.seed);
    std::fflush(stdout);
    ProgressBar bar("sampling", d.steps, o->quiet);
    so.progress = [&](int step, int) { bar.update(step); return true; };
    const std::vector<float> out = session.sample(so);
    bar.finish();
    if (want_latents) {
      write_npy_f32(o->output, {shape.batch, shape.channels, shape.height, shape.width}, out.data());
      if (!o->quiet) std::fprintf(stderr, "wrote %s (latents)\n", o->output.c_str());
      return;
    }
    nlohmann::json meta = {{"seed", so.seed}, {"sampler", d.sampler}, {"karras", so.karras}, {"steps", d.steps}, {"eta", so.eta},
                           {"rng", o->rng}, {"guidance_scale", d.guidance_scale}, {"batch", shape.batch},
                           {"height", shape.height}, {"width", shape.width}, {"model", o->model},
                           {"class_labels", so.class_labels}, {"scheduler", nlohmann::json::parse(d.scheduler_config)},
                           {"device", device}};
    if (init_opt->count()) {
      meta["init_image"] = o->init_image;
      meta["strength"] = d.strength;
      if (mask_opt->count()) meta["mask"] = o->mask;
    }
    if (prompted) {
      meta["prompt"] = o->prompts;
      meta["negative_prompt"] = o->negative_prompts;
    } else if (text_model) {
      meta["prompt_embeds"] = o->prompt_embeds;
      meta["negative_prompt_embeds"] = o->negative_prompt_embeds;
    }
    if (png) {
      int cols = o->grid_cols;
      if (!cols && o->classes == "all") cols = info.num_classes - (info.null_class >= 0 ? 1 : 0);
      write_png_grid(o->output, out.data(), shape.batch, shape.height, shape.width, shape.channels, cols,
                     {{"Software", "diffrt " DIFFRT_VERSION_STRING}, {"seed", std::to_string(so.seed)},
                      {"diffrt", meta.dump()}});
    } else {
      write_npy_f32(o->output, {shape.batch, shape.height, shape.width, shape.channels}, out.data());
    }
    if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->output.c_str());
  });
}

}  // namespace diffrt::cli
