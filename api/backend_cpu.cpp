// The CPU backend of an API session: the model's shared fp32 weights and a small cache of CPU executors (their
// activation arenas) keyed by (graph, batch, h, w, context length), most recently used first. The denoising
// loop is runtime/sampler.h's run_sampler with the UNet on a cached executor (for text-conditioned UNets with
// the text context as encoder_hidden_states, as sample_latents_cpu does), then the VAE decode on a cached
// decoder executor (as decode_latents_cpu). Tested by tests/api_test.cpp and tests/concurrency_test.cpp.
#include <unistd.h>

#include <list>
#include <new>
#include <tuple>

#include "api/api_internal.h"
#include "runtime/cpu_executor.h"

namespace diffrt {
namespace api {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const Model> model) : model_(std::move(model)), weights_(cpu_weights(*model_)) {}

  Device device() const override { return Device::Cpu; }
  std::string name() const override { return "the CPU (host memory)"; }
  uint64_t estimate(const Prepared& p) const override { return estimate_cpu_bytes(file(), p); }
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

  std::vector<float> run(const Prepared& p, const std::vector<float>& context, const ProgressFn& progress) override {
    const ModelFile& mf = file();
    const SampleRequest& r = p.req;
    const int bm = p.model_batch;
    CpuExecutor& ex = executor(mf.graph, bm, r.height, r.width, p.text ? p.context_len : 0);
    UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* y) {
      if (n != bm) fail(ErrorCode::Internal, "sampler model batch " + std::to_string(n) + " != " + std::to_string(bm));
      GraphInputs in;
      in.sample = x;
      in.timesteps = t;
      in.labels = labels;
      in.context = p.text ? context.data() : nullptr;
      ex.run(in, y);
    };
    std::vector<float> x = run_sampler(p.sched, r, mf.graph.out_channels, unet, progress);
    if (!p.decode) return x;
    CpuExecutor& vae = executor(mf.vae.graph, r.batch, r.height, r.width, 0);
    std::vector<float> img(vae.plan().shapes[size_t(mf.vae.graph.output)].numel());
    GraphInputs in;
    in.sample = x.data();
    vae.run(in, img.data());
    return img;
  }

  void eval(const float* x, int n, int h, int w, const float* t, const int32_t* labels, float* y) override {
    executor(file().graph, n, h, w, 0).run(x, t, labels, y);
  }

  void release_cache() override { executors_.clear(); }
  size_t cached_executors() const override { return executors_.size(); }

 private:
  const ModelFile& file() const { return ModelAccess::impl(*model_).file; }

  CpuExecutor& executor(const Graph& g, int n, int h, int w, int len) {
    const auto key = std::make_tuple(&g, n, h, w, len);
    for (auto it = executors_.begin(); it != executors_.end(); ++it)
      if (it->first == key) {
        executors_.splice(executors_.begin(), executors_, it);
        return *executors_.front().second;
      }
    while (executors_.size() >= kMaxCachedExecutors) executors_.pop_back();
    std::unique_ptr<CpuExecutor> ex;
    try {
      ex = std::make_unique<CpuExecutor>(file(), *weights_, g, PlanInputs{n, h, w, len});
    } catch (const std::bad_alloc&) {
      fail(ErrorCode::OutOfMemory, "out of host memory allocating activations for batch " + std::to_string(n) + " at " +
                                       std::to_string(h) + "x" + std::to_string(w));
    }
    executors_.emplace_front(key, std::move(ex));
    return *executors_.front().second;
  }

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const CpuWeights> weights_;
  std::list<std::pair<std::tuple<const Graph*, int, int, int, int>, std::unique_ptr<CpuExecutor>>> executors_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const Model> model, const SessionOptions&) {
  return std::make_unique<CpuBackend>(std::move(model));
}

}  // namespace api
}  // namespace diffrt
