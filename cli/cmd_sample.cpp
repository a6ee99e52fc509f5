// diffrt sample: the full DDPM/DDIM loop from noise to images (PNG grid or diffusers-style .npy).
#include <omp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/text_encode.h"
#include "runtime/cpu_executor.h"
#include "base/atomic_file.h"
#include "base/json_fields.h"
#include "base/image_png.h"
#include "runtime/latent_pipeline.h"
#include "base/layout.h"
#include "base/npy.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"
#include "runtime/text_encoder.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_latent.h"
#include "runtime/cuda/cuda_sampler.h"
#endif

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
  bool quiet = false;
};

// Model-file defaults, then --scheduler-config, then flags; validated as one diffusers config.
nlohmann::json scheduler_json(const ModelFile& mf, const SampleOpts& o) {
  nlohmann::json j = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  if (!o.scheduler_config.empty()) {
    auto text = read_file_bytes(o.scheduler_config, 1 << 20);
    nlohmann::json f = parse_json_strict(text, o.scheduler_config);
    if (!f.is_object()) fail(ErrorCode::InvalidArgument, o.scheduler_config + ": expected a JSON object");
    j = f;
  }
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

uint64_t parse_seed(const std::string& s) {
  if (s.empty()) {
    std::random_device rd;
    return (uint64_t(rd()) << 32 | rd()) & ((1ull << 53) - 1);  // printable and exact as a JSON number
  }
  if (s.find_first_not_of("0123456789") != std::string::npos || s.size() > 20)
    fail(ErrorCode::InvalidArgument, "--seed: expected an integer in [0, 2^64-1], got '" + s + "'");
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno == ERANGE) fail(ErrorCode::InvalidArgument, "--seed: '" + s + "' is larger than 2^64-1");
  return v;
}

// "--class 3", "--class 1,4,7" or "--class all" -> per-sample labels (cycling over the list).
std::vector<int32_t> parse_classes(const std::string& spec, const ModelFile& mf, int batch) {
  const int nc = mf.conditioning.num_classes, null_class = mf.conditioning.null_class;
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

// Text context of a text-conditioned model ([negative; positive] with guidance); empty otherwise.
struct TextInputs {
  std::vector<float> context;
  int len = 0;
};

// The denoising loop on the chosen backend: final x (pixels or latents) [B, h, w, C] NHWC.
std::vector<float> denoise(const std::string& device, const ModelFile& mf, const SchedulerConfig& sched,
                           const SampleRequest& req, const TextInputs& text, const ProgressFn& progress) {
  if (device == "cuda") {
#ifdef DIFFRT_HAVE_CUDA
    CudaContext ctx;
    CudaWeights weights(mf);
    if (mf.graph.context >= 0) return sample_latents_cuda(mf, weights, ctx, sched, req, text.context, text.len, progress);
    return run_sampler_cuda(mf, weights, ctx, sched, req, progress);
#else
    fail(ErrorCode::Unsupported, "this build has no CUDA backend");
#endif
  }
  CpuWeights weights(mf);
  if (mf.graph.context >= 0) return sample_latents_cpu(mf, weights, sched, req, text.context, text.len, progress);
  const int bm = model_batch(req);
  CpuExecutor ex(mf, weights, bm, req.height, req.width);  // checks the size before the loop starts
  UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* out) {
    if (n != bm) fail(ErrorCode::Internal, "sampler batch changed");
    ex.run(x, t, labels, out);
  };
  return run_sampler(sched, req, mf.graph.out_channels, unet, progress);
}

std::vector<float> decode(const std::string& device, const ModelFile& mf, const std::vector<float>& latents, int n,
                          int h, int w) {
  if (device == "cuda") {
#ifdef DIFFRT_HAVE_CUDA
    CudaContext ctx;
    CudaWeights weights(mf);
    return decode_latents_cuda(mf, weights, ctx, latents, n, h, w);
#endif
  }
  CpuWeights weights(mf);
  return decode_latents_cpu(mf, weights, latents, n, h, w);
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto o = std::make_shared<SampleOpts>();
  CLI::App* c = app.add_subcommand(
      "sample", "Sample images: noise -> DDPM/DDIM loop [-> VAE decode for latent models] -> PNG grid or .npy");
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
  c->add_option("--sampler", o->sampler, "ddpm or ddim (default: ddpm for a DDPMScheduler config, or none on a pixel model; else ddim, "
                "e.g. for DDIMScheduler and Stable Diffusion's PNDMScheduler configs)")
      ->check(CLI::IsMember({"ddpm", "ddim"}));
  CLI::Option* steps_opt = c->add_option("--steps", o->steps, "denoising steps (default: 1000 for ddpm, 50 for ddim, as diffusers' pipelines)");
  c->add_option("--eta", o->eta, "DDIM eta: 0 is deterministic DDIM, 1 is DDPM-like noise")->capture_default_str();
  c->add_option("--seed", o->seed, "random seed in [0, 2^64-1] (default: random; the seed used is printed and stored in the PNG)");
  c->add_option("--rng", o->rng,
                "noise generator: philox (counter-based; the same image per seed and sample index whatever the "
                "batch or device) or torch (reproduces torch.randn with a seeded CPU generator, as diffusers' pipelines draw it)")
      ->check(CLI::IsMember({"philox", "torch"}))->capture_default_str();
  c->add_option("-b,--batch", o->batch, "number of images")->capture_default_str();
  c->add_option("--class", o->classes, "class-conditional models: a class index, a comma-separated list (cycled over the batch) or 'all'");
  c->add_option("--guidance-scale", o->guidance,
                "classifier-free guidance scale s: eps = eps_uncond + s*(eps_cond - eps_uncond); <= 1 disables guidance "
                "(no unconditional pass). Default: 7.5 for text-conditioned models (as StableDiffusionPipeline), else 1");
  c->add_option("-H,--height", o->height,
                "image height in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("-W,--width", o->width,
                "image width in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("--scheduler-config", o->scheduler_config, "diffusers scheduler_config.json replacing the model file's default");
  c->add_option("--timestep-spacing", o->timestep_spacing, "override: leading, linspace or trailing");
  c->add_option("--prediction-type", o->prediction_type, "override: epsilon, sample or v_prediction");
  c->add_option("--variance-type", o->variance_type, "override (DDPM): fixed_small, fixed_small_log, fixed_large, learned, learned_range");
  c->add_option("--set", o->set, "override any scheduler config field: key=value (JSON value), repeatable");
  c->add_option("--grid-cols", o->grid_cols, "PNG grid columns (default: number of classes with --class all, else near-square)");
  c->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no progress bar or notices (the seed is still printed)");
  c->callback([o, steps_opt]() {
    if (steps_opt->count() && o->steps < 1) fail(ErrorCode::InvalidArgument, "--steps must be >= 1");
    const std::string device = resolve_device(o->device, o->quiet);
    if (o->threads < 0) fail(ErrorCode::InvalidArgument, "--threads must be >= 0");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    const bool png = o->output.size() >= 4 && o->output.compare(o->output.size() - 4, 4, ".png") == 0;
    const bool npy = o->output.size() >= 4 && o->output.compare(o->output.size() - 4, 4, ".npy") == 0;
    if (!png && !npy) fail(ErrorCode::InvalidArgument, "-o: output must end in .png or .npy, got '" + o->output + "'");
    if (o->batch < 1 || o->batch > 4096) fail(ErrorCode::InvalidArgument, "--batch must be in [1, 4096]");
    if (!(o->guidance == o->guidance) || o->guidance > 1000 || (o->guidance < 0 && o->guidance != -1.0))
      fail(ErrorCode::InvalidArgument, "--guidance-scale must be a number in [0, 1000]");
    if (!(o->eta >= 0 && o->eta <= 10)) fail(ErrorCode::InvalidArgument, "--eta must be in [0, 10]");

    ModelFile mf = read_model_file(o->model);
    nlohmann::json sj = scheduler_json(mf, *o);
    SchedulerConfig sched = scheduler_config_from_json(sj, o->scheduler_config.empty() ? o->model + " (scheduler)" : o->scheduler_config);

    const bool text_model = mf.graph.context >= 0;
    const bool latent_model = mf.vae.present();
    const bool want_latents = o->output_type == "latent";
    if (want_latents && !npy) fail(ErrorCode::InvalidArgument, "--output-type latent writes .npy only");
    if (!want_latents && text_model && !latent_model)
      fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder: use --output-type latent");
    const bool prompted = !o->prompts.empty();
    if (prompted && (!o->prompt_embeds.empty() || !o->negative_prompt_embeds.empty()))
      fail(ErrorCode::InvalidArgument, "give --prompt or --prompt-embeds, not both");
    if (!o->negative_prompts.empty() && !prompted)
      fail(ErrorCode::InvalidArgument, "--negative-prompt needs --prompt (with --prompt-embeds, give --negative-prompt-embeds)");
    if (text_model && !prompted && o->prompt_embeds.empty())
      fail(ErrorCode::InvalidArgument, mf.text_encoder.present()
                                           ? "this model is text-conditioned: give --prompt (or --prompt-embeds)"
                                           : "this model is text-conditioned: give --prompt-embeds (this model file has "
                                             "no text encoder for --prompt)");
    if (!text_model && (!o->prompt_embeds.empty() || !o->negative_prompt_embeds.empty()))
      fail(ErrorCode::InvalidArgument, "--prompt-embeds: this model is not text-conditioned");
    if (!text_model && prompted) fail(ErrorCode::InvalidArgument, "--prompt: this model is not text-conditioned");
    if (prompted && !mf.text_encoder.present())
      fail(ErrorCode::InvalidArgument, "--prompt: this model file has no text encoder and tokenizer (convert the pipeline "
                                       "folder with its text_encoder/ and tokenizer/, or give --prompt-embeds)");
    if (!text_model && want_latents) fail(ErrorCode::InvalidArgument, "--output-type latent: this model has no latents");

    SampleRequest req;
    std::string sampler = o->sampler;
    if (sampler.empty()) {
      // DDPMScheduler configs sample with DDPM; DDIM and the other SD schedulers (PNDM, ...) with DDIM.
      const nlohmann::json cls = sj.value("_class_name", nlohmann::json(""));
      sampler = cls == "DDPMScheduler" || (cls == "" && !text_model) ? "ddpm" : "ddim";
    }
    req.sampler = sampler == "ddim" ? SamplerKind::Ddim : SamplerKind::Ddpm;
    req.steps = o->steps ? o->steps : (req.sampler == SamplerKind::Ddim ? 50 : 1000);
    req.eta = float(o->eta);
    req.seed = parse_seed(o->seed);
    req.rng = o->rng == "torch" ? RngKind::Torch : RngKind::Philox;
    req.batch = o->batch;
    int sample_size = mf.config.contains("sample_size") && mf.config["sample_size"].is_number_integer()
                          ? mf.config["sample_size"].get<int>() : 0;
    const int f = latent_model ? vae_scale_factor(mf) : 1;  // pixels per latent
    const int img_h = o->height ? o->height : sample_size * f, img_w = o->width ? o->width : sample_size * f;
    if (img_h <= 0 || img_w <= 0) fail(ErrorCode::InvalidArgument, "the model has no sample_size: give -H and -W");
    if (img_h % f || img_w % f)
      fail(ErrorCode::InvalidArgument, "-H/-W must be multiples of the VAE's factor " + std::to_string(f) + ", got " +
                                           std::to_string(img_h) + "x" + std::to_string(img_w));
    req.height = img_h / f;
    req.width = img_w / f;
    req.channels = mf.graph.in_channels;
    TextInputs text;
    TextEmbeds pos, neg;
    req.guidance_scale = float(o->guidance >= 0 ? o->guidance : text_model ? 7.5 : 1.0);
    if (text_model && prompted) {
      // StableDiffusionPipeline.encode_prompt: the negative prompts are encoded only with guidance.
      req.text_cfg = true;
      PromptEmbeds pe = encode_prompts(mf, o->prompts, o->negative_prompts, guidance_on(req), o->batch,
                                       text_encoder_on(device, mf));
      pos = std::move(pe.positive);
      neg = std::move(pe.negative);
      req.batch = pos.batch;
    } else if (text_model) {
      pos = read_text_embeds(o->prompt_embeds);
      if (!o->negative_prompt_embeds.empty()) neg = read_text_embeds(o->negative_prompt_embeds);
      if (o->batch != 1 && o->batch != pos.batch)
        fail(ErrorCode::InvalidArgument, "--batch " + std::to_string(o->batch) + " but the prompt embeddings hold " +
                                             std::to_string(pos.batch) + " prompts (the batch is theirs)");
      req.batch = pos.batch;
      req.text_cfg = true;
    }
    req.class_labels = parse_classes(o->classes, mf, o->batch);
    if (mf.conditioning.num_classes && req.class_labels.empty())
      fail(ErrorCode::InvalidArgument, "this model is class-conditional: give --class (an index, a list or 'all')");
    req.null_class = mf.conditioning.null_class;
    if (text_model) {
      text.context = model_context(mf.graph, pos, neg.data.empty() ? nullptr : &neg, guidance_on(req));
      text.len = pos.len;
    }
    const bool cfg = guidance_on(req) && !text_model;
    if (cfg && req.null_class < 0)
      fail(ErrorCode::InvalidArgument, "--guidance-scale > 1 needs a null class; this model file has none "
                                       "(re-convert with --null-class)");

    std::printf("seed: %llu\n", (unsigned long long)req.seed);
    std::fflush(stdout);
    ProgressBar bar("sampling", req.steps, o->quiet);
    ProgressFn progress = [&](int step, int total) { (void)total; bar.update(step); return true; };
    std::vector<float> x = denoise(device, mf, sched, req, text, progress);
    bar.finish();
    if (want_latents) {
      write_npy_f32(o->output, {req.batch, req.channels, req.height, req.width},
                    nhwc_to_nchw(x, req.batch, req.height, req.width, req.channels).data());
      if (!o->quiet) std::fprintf(stderr, "wrote %s (latents)\n", o->output.c_str());
      return;
    }
    int out_c = req.channels;
    if (latent_model) {
      x = decode(device, mf, x, req.batch, req.height, req.width);
      out_c = mf.vae.graph.out_channels;
    }
    std::vector<float> img = to_image_01(x);

    nlohmann::json meta = {{"seed", req.seed}, {"sampler", sampler}, {"steps", req.steps}, {"eta", req.eta},
                           {"rng", o->rng}, {"guidance_scale", req.guidance_scale}, {"batch", req.batch},
                           {"height", img_h}, {"width", img_w}, {"model", o->model},
                           {"class_labels", req.class_labels}, {"scheduler", sj}, {"device", device}};
    if (text_model && prompted) {
      meta["prompt"] = o->prompts;
      meta["negative_prompt"] = o->negative_prompts;
    } else if (text_model) {
      meta["prompt_embeds"] = o->prompt_embeds;
      meta["negative_prompt_embeds"] = o->negative_prompt_embeds;
    }
    if (png) {
      int cols = o->grid_cols;
      if (!cols && o->classes == "all") cols = mf.conditioning.num_classes - (mf.conditioning.null_class >= 0 ? 1 : 0);
      write_png_grid(o->output, img.data(), req.batch, img_h, img_w, out_c, cols,
                     {{"Software", "diffrt " DIFFRT_VERSION_STRING}, {"seed", std::to_string(req.seed)},
                      {"diffrt", meta.dump()}});
    } else {
      write_npy_f32(o->output, {req.batch, img_h, img_w, out_c}, img.data());
    }
    if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->output.c_str());
  });
}

}  // namespace diffrt::cli
