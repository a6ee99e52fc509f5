// Shared pieces of diffrt bench / profile (contracts in bench_common.h).
#include "cli/bench_common.h"

#include <cstdio>

#include "base/error.h"
#include "base/host_env.h"
#include "runtime/cpu_bench.h"
#include "base/atomic_file.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_bench.h"
#include "runtime/cuda/cuda_env.h"
#endif

namespace diffrt::cli {

void add_workload_options(CLI::App* c, WorkloadOptions& o, const char* steps_help) {
  c->add_option("-b,--batch", o.batch, "images per sampling run (the UNet runs at twice this with guidance)")
      ->capture_default_str();
  c->add_option("-H,--height", o.height,
                "image height in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("-W,--width", o.width,
                "image width in pixels (default: the model's sample_size, times the VAE's factor for latent models)");
  c->add_option("--steps", o.steps, steps_help)->capture_default_str();
  c->add_option("--sampler", o.sampler,
                "ddpm or ddim (default: ddpm for a DDPMScheduler config or none on a pixel model, else ddim)")
      ->check(CLI::IsMember({"ddpm", "ddim"}));
  c->add_option("--eta", o.eta, "DDIM eta (eta > 0 draws noise every step)")->capture_default_str();
  c->add_option("--guidance-scale", o.guidance,
                "classifier-free guidance scale; > 1 runs the UNet on [uncond; cond] (twice the batch). Default: 7.5 "
                "for text-conditioned models (as StableDiffusionPipeline), else 1");
  c->add_option("--context-len", o.context_len,
                "text-conditioned models: tokens of the random text embeddings (77 for CLIP)")->capture_default_str();
  c->add_option("--prompt-embeds", o.prompt_embeds,
                "text-conditioned models: prompt embeddings .npy float32 [B, L, D] instead of random ones");
  c->add_option("--negative-prompt-embeds", o.negative_prompt_embeds,
                "text-conditioned models: negative prompt embeddings, same shape (random when not given)");
  c->add_option("--seed", o.seed, "seed of the sampler noise and of the random inputs")->capture_default_str();
}

nlohmann::json environment_json(const std::string& device, const std::string& command) {
  nlohmann::json env = host_environment_json();
  env["date_utc"] = utc_now_iso();
  env["command"] = command;
  env["device"] = device;
#ifdef DIFFRT_HAVE_CUDA
  if (device == "cuda") env.update(cuda_environment_json(0));
#endif
  return env;
}

nlohmann::json model_json(const ModelFile& mf, const std::string& path, const std::string& name) {
  uint64_t params = 0, bytes = 0;
  for (const TensorInfo& t : mf.tensors) {
    params += t.numel();
    bytes += t.nbytes;
  }
  return {{"path", path}, {"name", name}, {"family", mf.family},
          {"dtype", mf.tensors.empty() ? "?" : dtype_name(mf.tensors.front().dtype)}, {"parameters", params},
          {"tensor_bytes", bytes}, {"unet_nodes", mf.graph.nodes.size()},
          {"vae_nodes", mf.vae.present() ? mf.vae.graph.nodes.size() : 0}};
}

std::string file_stem(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

void write_json_file(const std::string& path, const nlohmann::json& j) {
  const std::string text = j.dump(1) + "\n";
  write_file_atomic(path, text.data(), text.size());
}

#ifdef DIFFRT_HAVE_CUDA
struct BenchBackend::Cuda {
  uint64_t baseline = 0;
  CudaContext ctx;
  CudaWeights weights;
  // The baseline is taken once the CUDA context exists (cudaFree(0)), before the stream, handles and weights.
  explicit Cuda(const ModelFile& mf) : baseline(init_baseline()), ctx(), weights(mf, ctx.device()) {}
  static uint64_t init_baseline() {
    DIFFRT_CUDA_CHECK(cudaFree(nullptr));
    return device_used_bytes();
  }
};
#else
struct BenchBackend::Cuda {};
#endif

BenchBackend::BenchBackend(const std::string& device, const ModelFile& mf) : device_(device), mf_(mf) {
  if (device == "cuda") {
#ifdef DIFFRT_HAVE_CUDA
    cuda_ = std::make_unique<Cuda>(mf);
#else
    fail(ErrorCode::Unsupported, "this build has no CUDA backend");
#endif
  } else if (device != "cpu") {
    fail(ErrorCode::InvalidArgument, "unknown device '" + device + "'");
  }
}

BenchBackend::~BenchBackend() = default;

BenchResults BenchBackend::bench(const Workload& w, const BenchOptions& o) {
#ifdef DIFFRT_HAVE_CUDA
  if (cuda_) return bench_cuda(mf_, cuda_->weights, cuda_->ctx, w, o, cuda_->baseline);
#endif
  return bench_cpu(mf_, w, o);
}

ProfileRun BenchBackend::profile(const Workload& w, int warmup, int repeats, bool vae, bool ceilings) {
  ProfileRun run;
#ifdef DIFFRT_HAVE_CUDA
  if (cuda_) {
    run.graphs = profile_cuda(mf_, cuda_->weights, cuda_->ctx, w, warmup, repeats, vae);
    if (ceilings) run.ceilings = measure_ceilings(cuda_->ctx, cuda_->weights.dtype());
    return run;
  }
#endif
  (void)ceilings;
  run.graphs = profile_cpu(mf_, w, warmup, repeats, vae);
  return run;
}

nlohmann::json write_trace(const std::string& path, const ProfileRun& run, const nlohmann::json& meta, int top,
                           bool quiet) {
  write_json_file(path, chrome_trace(run.graphs, run.ceilings, meta));
  if (!quiet) {
    if (run.ceilings.copy_gbps > 0)
      std::fprintf(stderr, "ceilings: copy %.0f GB/s, GEMM %.1f TFLOP/s (model dtype)\n", run.ceilings.copy_gbps,
                   run.ceilings.gemm_tflops);
    std::fprintf(stderr, "%s", op_summary_table(run.graphs, run.ceilings, top).c_str());
    std::fprintf(stderr, "wrote %s (open in ui.perfetto.dev or chrome://tracing)\n", path.c_str());
  }
  return op_summary_json(run.graphs, run.ceilings);
}

}  // namespace diffrt::cli
