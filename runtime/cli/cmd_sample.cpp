// diffrt sample: the full DDPM/DDIM loop from noise to images (PNG grid or diffusers-style .npy).
#include <omp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "kernels/common/error.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/progress.h"
#include "runtime/cpu_executor.h"
#include "runtime/format/atomic_file.h"
#include "runtime/format/json_fields.h"
#include "runtime/image_png.h"
#include "runtime/npy.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_sampler.h"
#endif

namespace diffrt::cli {

namespace {

struct SampleOpts {
  std::string model, scheduler_config, sampler, rng = "philox", output, device = "auto", classes;
  std::string timestep_spacing, prediction_type, variance_type;
  std::vector<std::string> set;
  int steps = 0, batch = 1, height = 0, width = 0, threads = 0, grid_cols = 0;
  double eta = 0.0, guidance = 1.0;
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

std::vector<float> sample_cpu(const ModelFile& mf, const SchedulerConfig& sched, const SampleRequest& req,
                              const ProgressFn& progress) {
  CpuWeights weights(mf);
  const bool cfg = req.guidance_scale > 1.0f && !req.class_labels.empty();
  const int bm = cfg ? 2 * req.batch : req.batch;
  CpuExecutor ex(mf, weights, bm, req.height, req.width);  // checks the size before the loop starts
  UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* out) {
    if (n != bm) fail(ErrorCode::Internal, "sampler batch changed");
    ex.run(x, t, labels, out);
  };
  return run_sampler(sched, req, mf.graph.out_channels, unet, progress);
}

std::vector<float> sample_cuda(const ModelFile& mf, const SchedulerConfig& sched, const SampleRequest& req,
                               const ProgressFn& progress) {
#ifdef DIFFRT_HAVE_CUDA
  CudaContext ctx;
  CudaWeights weights(mf);
  return run_sampler_cuda(mf, weights, ctx, sched, req, progress);
#else
  (void)mf; (void)sched; (void)req; (void)progress;
  fail(ErrorCode::Unsupported, "this build has no CUDA backend");
#endif
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto o = std::make_shared<SampleOpts>();
  CLI::App* c = app.add_subcommand("sample", "Sample images: noise -> DDPM/DDIM loop -> PNG grid or .npy");
  c->add_option("-m,--model", o->model, "model file (.drt)")->required();
  c->add_option("-o,--output", o->output,
                "output: .png (a grid when batch > 1; seed and settings in its metadata) or .npy "
                "(NHWC float32 in [0, 1], like diffusers output_type=\"np\")")->required();
  c->add_option("--sampler", o->sampler, "ddpm or ddim (default: ddim if the scheduler config is a DDIMScheduler, else ddpm)")
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
                "(no unconditional pass)")->capture_default_str();
  c->add_option("-H,--height", o->height, "image height (default: the model's sample_size)");
  c->add_option("-W,--width", o->width, "image width (default: the model's sample_size)");
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
    if (!(o->guidance == o->guidance) || o->guidance < 0 || o->guidance > 1000)
      fail(ErrorCode::InvalidArgument, "--guidance-scale must be a number in [0, 1000]");
    if (!(o->eta >= 0 && o->eta <= 10)) fail(ErrorCode::InvalidArgument, "--eta must be in [0, 10]");

    ModelFile mf = read_model_file(o->model);
    nlohmann::json sj = scheduler_json(mf, *o);
    SchedulerConfig sched = scheduler_config_from_json(sj, o->scheduler_config.empty() ? o->model + " (scheduler)" : o->scheduler_config);

    SampleRequest req;
    std::string sampler = o->sampler;
    if (sampler.empty()) sampler = sj.value("_class_name", nlohmann::json("")) == "DDIMScheduler" ? "ddim" : "ddpm";
    req.sampler = sampler == "ddim" ? SamplerKind::Ddim : SamplerKind::Ddpm;
    req.steps = o->steps ? o->steps : (req.sampler == SamplerKind::Ddim ? 50 : 1000);
    req.eta = float(o->eta);
    req.seed = parse_seed(o->seed);
    req.rng = o->rng == "torch" ? RngKind::Torch : RngKind::Philox;
    req.batch = o->batch;
    int sample_size = mf.config.contains("sample_size") && mf.config["sample_size"].is_number_integer()
                          ? mf.config["sample_size"].get<int>() : 0;
    req.height = o->height ? o->height : sample_size;
    req.width = o->width ? o->width : sample_size;
    if (req.height <= 0 || req.width <= 0)
      fail(ErrorCode::InvalidArgument, "the model has no sample_size: give -H and -W");
    req.channels = mf.graph.in_channels;
    req.class_labels = parse_classes(o->classes, mf, o->batch);
    if (mf.conditioning.num_classes && req.class_labels.empty())
      fail(ErrorCode::InvalidArgument, "this model is class-conditional: give --class (an index, a list or 'all')");
    req.guidance_scale = float(o->guidance);
    req.null_class = mf.conditioning.null_class;
    const bool cfg = req.guidance_scale > 1.0f && !req.class_labels.empty();
    if (cfg && req.null_class < 0)
      fail(ErrorCode::InvalidArgument, "--guidance-scale > 1 needs a null class; this model file has none "
                                       "(re-convert with --null-class)");

    std::printf("seed: %llu\n", (unsigned long long)req.seed);
    std::fflush(stdout);
    ProgressBar bar("sampling", req.steps, o->quiet);
    ProgressFn progress = [&](int step, int total) { (void)total; bar.update(step); return true; };
    std::vector<float> x = device == "cuda" ? sample_cuda(mf, sched, req, progress)
                                            : sample_cpu(mf, sched, req, progress);
    bar.finish();
    std::vector<float> img = to_image_01(x);

    nlohmann::json meta = {{"seed", req.seed}, {"sampler", sampler}, {"steps", req.steps}, {"eta", req.eta},
                           {"rng", o->rng}, {"guidance_scale", req.guidance_scale}, {"batch", req.batch},
                           {"height", req.height}, {"width", req.width}, {"model", o->model},
                           {"class_labels", req.class_labels}, {"scheduler", sj}, {"device", device}};
    if (png) {
      int cols = o->grid_cols;
      if (!cols && o->classes == "all") cols = mf.conditioning.num_classes - (mf.conditioning.null_class >= 0 ? 1 : 0);
      write_png_grid(o->output, img.data(), req.batch, req.height, req.width, req.channels, cols,
                     {{"Software", "diffrt " DIFFRT_VERSION_STRING}, {"seed", std::to_string(req.seed)},
                      {"diffrt", meta.dump()}});
    } else {
      write_npy_f32(o->output, {req.batch, req.height, req.width, req.channels}, img.data());
    }
    if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->output.c_str());
  });
}

}  // namespace diffrt::cli
