// The CPU backend of a session (contract in engine.h): the model's shared fp32 weights and a small cache of CPU
// executors (their activation arenas) keyed by (graph, batch, h, w, context length), most recently used first.
// The denoising loop is runtime/sampler.h's run_sampler with the denoiser on a cached executor (with the text
// context as encoder_hidden_states for text-conditioned models), then the VAE decode on a cached executor. The VAE
// encoder runs on a cached executor too, followed by the posterior's CPU reference (runtime/vae_encode.h); image-to-image
// and inpainting jobs encode their image with it before the loop (runtime/engine/image_inputs.h).
// Tested by tests/api_test.cpp, tests/concurrency_test.cpp and every CLI test.
#include <unistd.h>

#include <new>

#include "base/error.h"
#include "runtime/cpu_bench.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/executor_cache.h"
#include "runtime/engine/image_inputs.h"
#include "runtime/rng.h"

namespace diffrt::engine {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(std::shared_ptr<const LoadedModel> model)
      : model_(std::move(model)), weights_(model_->cpu_weights()) {}

  DeviceKind device() const override { return DeviceKind::Cpu; }
  std::string name() const override { return "the CPU (host memory)"; }
  uint64_t estimate(const Job& job) const override { return estimate_cpu_bytes(file(), job); }
  // Linux overcommits: a request larger than the machine's RAM could "allocate" and then be killed when its
  // pages are touched, so it is refused up front (the session limit is the finer control).
  void preflight(uint64_t bytes) override {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return;
    const uint64_t ram = uint64_t(pages) * uint64_t(page);
    if (bytes > ram)
      fail(ErrorCode::OutOfMemory, "out of memory: the request needs about " + bytes_str(bytes) +
                                       " of working memory on " + name() + ", more than the machine's " + bytes_str(ram) +
                                       " of RAM (use a smaller batch or size)");
  }

  std::vector<float> run(const Job& job, const ProgressFn& progress) override {
    const ModelFile& mf = file();
    const SampleRequest& r = job.req;
    const int bm = job.model_batch;
    CpuExecutor& ex = executor(mf.graph, bm, r.height, r.width, job.text ? job.context_len : 0);
    UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* y) {
      if (n != bm) fail(ErrorCode::Internal, "sampler model batch " + std::to_string(n) + " != " + std::to_string(bm));
      GraphInputs in;
      in.sample = x;
      in.timesteps = t;
      in.labels = labels;
      in.context = job.text ? job.context.data() : nullptr;
      ex.run(in, y);
    };
    // Image-to-image / inpainting: the VAE encodes first, with the request's generator (image_inputs.h).
    std::unique_ptr<TorchGenerator> gen;
    ImageJobInputs img;
    if (job.image.present()) {
      if (r.rng == RngKind::Torch) gen = std::make_unique<TorchGenerator>(r.seed);
      img = build_image_inputs(job, gen.get(), [&](const std::vector<float>& x, int n, int h, int w,
                                                   const PosteriorOptions& o) { return encode_latents(x, n, h, w, o); });
    }
    std::vector<float> x = run_sampler(job.sched, r, mf.graph.out_channels, unet, progress, img.sampler_inputs(gen.get()));
    if (!job.decode) return x;
    return decode(x, r.batch, r.height, r.width);
  }

  void eval(const EvalJob& e, float* y) override {
    GraphInputs in;
    in.sample = e.x;
    in.timesteps = e.t;
    in.labels = e.labels;
    in.context = e.context;
    executor(file().graph, e.n, e.h, e.w, e.context ? e.context_len : 0).run(in, y);
  }

  std::vector<float> decode(const std::vector<float>& latents, int n, int h, int w) override {
    const ModelFile& mf = file();
    if (!mf.vae.present()) fail(ErrorCode::InvalidArgument, "this model file has no VAE decoder");
    const Graph& g = mf.vae.graph;
    if (latents.size() != size_t(n) * size_t(h) * size_t(w) * size_t(g.in_channels))
      fail(ErrorCode::InvalidArgument, "latents do not match [n, h, w, " + std::to_string(g.in_channels) + "]");
    CpuExecutor& vae = executor(g, n, h, w, 0);
    std::vector<float> img(vae.plan().shapes[size_t(g.output)].numel());
    GraphInputs in;
    in.sample = latents.data();
    vae.run(in, img.data());
    return img;
  }

  EncodedLatents encode(const std::vector<float>& images, int n, int h, int w) override {
    CpuExecutor& enc = encoder(images, n, h, w);
    const ValueShape& os = enc.plan().shapes[size_t(enc.graph().output)];
    EncodedLatents r;
    r.n = n; r.h = int(os.h); r.w = int(os.w); r.c = int(os.c);
    r.data = encode_moments_cpu(enc, images.data());
    return r;
  }

  EncodedLatents encode_latents(const std::vector<float>& images, int n, int h, int w,
                                const PosteriorOptions& o) override {
    const EncodedLatents m = encode(images, n, h, w);
    return posterior_cpu(file(), m.data, m.n, m.h, m.w, o);
  }

  TextEmbeds encode_text(const std::vector<int32_t>& ids, int batch, int len) override {
    return encode_ids_cpu(file(), *weights_, ids, batch, len);
  }

  BenchResults bench(const Workload& w, const BenchOptions& o) override { return bench_cpu(file(), *weights_, w, o); }

  ProfileRun profile(const Workload& w, int warmup, int repeats, bool vae, bool) override {
    ProfileRun run;
    run.graphs = profile_cpu(file(), *weights_, w, warmup, repeats, vae);
    return run;
  }

  void release_cache() override { executors_.clear(); }
  size_t cached_executors() const override { return executors_.size(); }

 private:
  const ModelFile& file() const { return model_->file(); }

  // The VAE encoder's executor for images [n, h, w, Cin] (checked against the graph).
  CpuExecutor& encoder(const std::vector<float>& images, int n, int h, int w) {
    const ModelFile& mf = file();
    require_vae_encoder(mf);
    const Graph& g = mf.vae_encoder.graph;
    if (n < 1 || h < 1 || w < 1 || images.size() != size_t(n) * size_t(h) * size_t(w) * size_t(g.in_channels))
      fail(ErrorCode::InvalidArgument, "images do not match [n, h, w, " + std::to_string(g.in_channels) + "]");
    return executor(g, n, h, w, 0);
  }

  CpuExecutor& executor(const Graph& g, int n, int h, int w, int len) {
    return executors_.get({&g, n, h, w, len}, [&] {
      try {
        return std::make_unique<CpuExecutor>(file(), *weights_, g, PlanInputs{n, h, w, len});
      } catch (const std::bad_alloc&) {
        fail(ErrorCode::OutOfMemory, "out of host memory allocating activations for batch " + std::to_string(n) +
                                         " at " + std::to_string(h) + "x" + std::to_string(w));
      }
    });
  }

  std::shared_ptr<const LoadedModel> model_;
  std::shared_ptr<const CpuWeights> weights_;
  ExecutorCache<CpuExecutor> executors_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const LoadedModel> model) {
  return std::make_unique<CpuBackend>(std::move(model));
}

}  // namespace diffrt::engine
