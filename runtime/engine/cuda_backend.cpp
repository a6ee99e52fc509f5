// The CUDA backend of a session (contract in engine.h; builds with DIFFRT_HAVE_CUDA, otherwise make_backend
// reports that the build has none). Per session: its own CudaContext (non-blocking stream, cuDNN and cuBLASLt
// handles and workspaces) and its executors' arenas (made per sampling call by run_sampler_cuda; cached per shape
// for eval, decode and the text encoder). Per model and device: one CudaWeights, uploaded by the first session on
// that device and shared by every session and every phase (LoadedModel::cuda_weights).
//
// Memory: preflight() compares the request's estimate (request.cpp: cuda_memory_report's peak minus the shared
// weights, plus the sampler's tables) with cudaMemGetInfo's free bytes (after dropping this session's own cached
// eval arenas if that makes the difference) and refuses up front with Error(OutOfMemory) giving both figures.
// While running, any allocation failure (cudaMalloc via DeviceBuffer, or any CUDA/cuBLAS/cuDNN allocation status,
// which DIFFRT_CUDA_CHECK maps to ErrorCode::OutOfMemory) is re-thrown as Error(OutOfMemory) with the estimate and
// the free memory at the start of the call. After any failed call (but a cancellation) the session drops its
// context and cached executors and makes a fresh context on its next call, so no half-grown workspace or stale
// cuDNN plan survives a failure. Cancellation drains the stream first (run_sampler_cuda) and keeps the context.
// Tested by tests/gpu/api_test.cpp (skipped without a device).
#include <cstdio>
#include <new>

#include "base/error.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/executor_cache.h"
#include "runtime/engine/image_inputs.h"

#ifdef DIFFRT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/common/cuda_check.h"
#include "runtime/cuda/cuda_bench.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/cuda/cuda_latent.h"
#include "runtime/cuda/cuda_sampler.h"
#include "runtime/cuda/cuda_text.h"
#endif

namespace diffrt::engine {

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const LoadedModel> model);  // cpu_backend.cpp

#ifndef DIFFRT_HAVE_CUDA

int cuda_device_count(std::string* why) {
  if (why) *why = "this build of diffrt has no CUDA backend (built without a CUDA compiler or with -DDIFFRT_CUDA=OFF)";
  return 0;
}

std::shared_ptr<const CudaWeights> LoadedModel::cuda_weights(int) const {
  std::string why;
  cuda_device_count(&why);
  fail(ErrorCode::Unsupported, "device cuda: " + why);
}

std::unique_ptr<Backend> make_backend(std::shared_ptr<const LoadedModel> model, const BackendOptions& o) {
  if (o.device == DeviceKind::Cpu) return make_cpu_backend(std::move(model));
  std::string why;
  cuda_device_count(&why);
  fail(ErrorCode::Unsupported, "device cuda: " + why + "; use the cpu device");
}

#else  // DIFFRT_HAVE_CUDA

namespace {

std::string cuda_error(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }

// Makes `device` current on the calling thread for one API call and restores the caller's device after, so the
// library never changes the current device of an application thread.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      (void)cudaGetLastError();
      prev_ = -1;
    }
    if (prev_ != device) DIFFRT_CUDA_CHECK(cudaSetDevice(device));
    set_ = prev_ != device;
  }
  ~DeviceScope() {
    if (set_ && prev_ >= 0) (void)cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = -1;
  bool set_ = false;
};

// Free and total bytes of the current device; {0, 0} when the query fails (messages only).
std::pair<uint64_t, uint64_t> device_memory() {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();
    return {0, 0};
  }
  return {free, total};
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const LoadedModel> model, const BackendOptions& o)
      : model_(std::move(model)), device_(o.device_ordinal) {
    ctx_opt_.device = device_;
    ctx_opt_.exhaustive_conv_search = !o.deterministic;
    DeviceScope scope(device_);
    DIFFRT_CUDA_CHECK(cudaFree(nullptr));  // the device's primary context, before measuring the baseline
    baseline_used_ = device_used_bytes();  // bench: peak memory is measured above this
    weights_ = model_->cuda_weights(device_);
    ensure_context();
  }
  ~CudaBackend() override {
    try {
      DeviceScope scope(device_);  // the handles and streams go on their own device
      executors_.clear();
      ctx_.reset();
    } catch (...) {
      executors_.clear();
      ctx_.reset();
    }
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  DeviceKind device() const override { return DeviceKind::Cuda; }
  std::string name() const override { return "CUDA device " + std::to_string(device_); }
  uint64_t estimate(const Job& job) const override { return estimate_cuda_bytes(file(), job); }

  void preflight(uint64_t bytes) override {
    DeviceScope scope(device_);
    size_t free = 0, total = 0;
    DIFFRT_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    if (bytes > free && !executors_.empty()) {  // this session's own cached arenas may be in the way
      executors_.clear();
      DIFFRT_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    }
    if (bytes > free)
      fail(ErrorCode::OutOfMemory, "out of device memory: the request needs about " + bytes_str(bytes) +
                                       " of working memory on " + name() + ", which has " + bytes_str(free) + " free of " +
                                       bytes_str(total) + " (use a smaller batch or size)");
  }

  std::vector<float> run(const Job& job, const ProgressFn& progress) override {
    return on_device("sampling", job.estimated_bytes, [&] {
      const ModelFile& mf = file();
      const SampleRequest& r = job.req;
      // Image-to-image / inpainting: the VAE encodes first (the fused posterior kernel), with the request's
      // generator, which then continues into the loop (image_inputs.h).
      std::unique_ptr<TorchGenerator> gen;
      ImageJobInputs img;
      if (job.image.present()) {
        if (r.rng == RngKind::Torch) gen = std::make_unique<TorchGenerator>(r.seed);
        img = build_image_inputs(job, gen.get(), [&](const std::vector<float>& x, int n, int h, int w,
                                                     const PosteriorOptions& o) {
          return encode_latents_cuda(mf, *weights_, *ctx_, x, n, h, w, o);
        });
      }
      std::vector<float> x;
      CudaSamplerStats stats;
      if (job.text) {
        if (job.context.size() != size_t(job.model_batch) * size_t(job.context_len) * size_t(mf.graph.context_dim))
          fail(ErrorCode::Internal, "text context does not match the model batch");
        CudaTextContext text;
        text.data = job.context.data();
        text.len = job.context_len;
        x = run_sampler_cuda(mf, *weights_, *ctx_, job.sched, r, progress, {}, &stats, text, img.sampler_inputs(gen.get()));
      } else {
        x = run_sampler_cuda(mf, *weights_, *ctx_, job.sched, r, progress, {}, &stats, {}, img.sampler_inputs(gen.get()));
      }
      // The eager fallback gives the same numbers, slower: say so once per session rather than stay silent
      // (diffrt bench reports it per run as graph_used and a note).
      if (stats.graph_capture_failed && !warned_graph_fallback_) {
        warned_graph_fallback_ = true;
        std::fprintf(stderr, "diffrt: warning: CUDA graph capture failed on %s (%s); the sampler runs eagerly (slower)\n",
                     name().c_str(), stats.graph_fallback.c_str());
      }
      if (!job.decode) return x;
      return decode_latents_cuda(mf, *weights_, *ctx_, x, r.batch, r.height, r.width);
    });
  }

  void eval(const EvalJob& e, float* y) override {
    on_device("eval", 0, [&] {
      GraphInputs in;
      in.sample = e.x;
      in.timesteps = e.t;
      in.labels = e.labels;
      in.context = e.context;
      executor(file().graph, e.n, e.h, e.w, e.context ? e.context_len : 0).run(in, y);
      return 0;
    });
  }

  std::vector<float> decode(const std::vector<float>& latents, int n, int h, int w) override {
    return on_device("decoding", 0, [&] { return decode_latents_cuda(file(), *weights_, *ctx_, latents, n, h, w); });
  }

  EncodedLatents encode(const std::vector<float>& images, int n, int h, int w) override {
    return on_device("encoding the images", 0, [&] { return encode_moments_cuda(file(), *weights_, *ctx_, images, n, h, w); });
  }

  EncodedLatents encode_latents(const std::vector<float>& images, int n, int h, int w,
                                const PosteriorOptions& o) override {
    return on_device("encoding the images", 0,
                     [&] { return encode_latents_cuda(file(), *weights_, *ctx_, images, n, h, w, o); });
  }

  TextEmbeds encode_text(const std::vector<int32_t>& ids, int batch, int len) override {
    return on_device("encoding the prompts", 0, [&] { return encode_ids_cuda(file(), *weights_, *ctx_, ids, batch, len); });
  }

  BenchResults bench(const Workload& w, const BenchOptions& o) override {
    return on_device("benchmarking", 0, [&] { return bench_cuda(file(), *weights_, *ctx_, w, o, baseline_used_); });
  }

  ProfileRun profile(const Workload& w, int warmup, int repeats, bool vae, bool ceilings) override {
    return on_device("profiling", 0, [&] {
      ProfileRun run;
      run.graphs = profile_cuda(file(), *weights_, *ctx_, w, warmup, repeats, vae);
      if (ceilings) run.ceilings = measure_ceilings(*ctx_, weights_->dtype());
      return run;
    });
  }

  void release_cache() override {
    DeviceScope scope(device_);
    executors_.clear();
  }
  size_t cached_executors() const override { return executors_.size(); }

 private:
  const ModelFile& file() const { return model_->file(); }

  void ensure_context() {
    if (ctx_) return;
    try {
      ctx_ = std::make_unique<CudaContext>(ctx_opt_);
    } catch (const Error& e) {
      const std::string hint = faulted_ ? " (an earlier failure on this device may have left the process's CUDA "
                                          "context unusable; if this persists, restart the process)"
                                        : "";
      throw Error(e.code(), "creating the session's CUDA context on " + name() + ": " + e.what() + hint);
    }
  }

  // Runs f on the session's device and context. Any failure but a cancellation drops the context and the
  // cached executors (rebuilt by the next call); an allocation failure becomes Error(OutOfMemory) with figures.
  template <class F>
  auto on_device(const char* what, uint64_t need, F&& f) -> decltype(f()) {
    DeviceScope scope(device_);
    const uint64_t free_before = device_memory().first;
    try {
      ensure_context();
      return f();
    } catch (const Error& e) {
      if (e.code() == ErrorCode::Cancelled) throw;
      reset();
      if (e.code() != ErrorCode::OutOfMemory) throw;
      fail(ErrorCode::OutOfMemory,
           "out of device memory on " + name() + " while " + what + ": " + e.what() +
               (need ? ". The request needs about " + bytes_str(need) + " of working memory" : std::string()) + "; " +
               bytes_str(free_before) + " were free when it started. The session stays usable (use a smaller batch or size)");
    } catch (...) {
      reset();
      throw;
    }
  }

  void reset() noexcept {
    faulted_ = true;
    executors_.clear();
    ctx_.reset();  // synchronises its stream (errors ignored) and frees its handles and workspaces
    (void)cudaGetLastError();
  }

  CudaExecutor& executor(const Graph& g, int n, int h, int w, int len) {
    return executors_.get({&g, n, h, w, len},
                          [&] { return std::make_unique<CudaExecutor>(file(), *weights_, *ctx_, g, PlanInputs{n, h, w, len}); });
  }

  std::shared_ptr<const LoadedModel> model_;
  int device_ = 0;
  uint64_t baseline_used_ = 0;
  CudaContext::Options ctx_opt_;
  std::shared_ptr<const CudaWeights> weights_;
  std::unique_ptr<CudaContext> ctx_;
  bool faulted_ = false;
  bool warned_graph_fallback_ = false;
  // Eval executors (they reference ctx_: cleared before it goes), most recently used first.
  ExecutorCache<CudaExecutor> executors_;
};

}  // namespace

// One CudaWeights per (model, device), made by the first session on the device and shared by the rest and by
// every phase of a request (text encoder, loop, decode).
std::shared_ptr<const CudaWeights> LoadedModel::cuda_weights(int device) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cuda_.find(device);
  if (it != cuda_.end()) return it->second;
  std::shared_ptr<const CudaWeights> w;
  try {
    w = std::make_shared<const CudaWeights>(file_, device);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::OutOfMemory) throw;
    const auto [free, total] = device_memory();
    fail(ErrorCode::OutOfMemory, "out of device memory uploading the model's weights (" + bytes_str(file_.data.size()) +
                                     ") to CUDA device " + std::to_string(device) + ": " + bytes_str(free) + " of " +
                                     bytes_str(total) + " free (" + e.what() + ")");
  }
  cuda_.emplace(device, w);
  ++uploads_;
  return w;
}

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = "no usable CUDA device (cudaGetDeviceCount: " + cuda_error(e) + ")";
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n;
}

std::unique_ptr<Backend> make_backend(std::shared_ptr<const LoadedModel> model, const BackendOptions& o) {
  if (o.device == DeviceKind::Cpu) return make_cpu_backend(std::move(model));
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0) fail(ErrorCode::Unsupported, "device cuda: " + why + "; use the cpu device");
  if (o.device_ordinal < 0 || o.device_ordinal >= n)
    fail(ErrorCode::InvalidArgument, "device_ordinal = " + std::to_string(o.device_ordinal) + ": this machine has " + std::to_string(n) +
        " CUDA device(s), [0, " + std::to_string(n - 1) + "]");
  return std::make_unique<CudaBackend>(std::move(model), o);
}

#endif  // DIFFRT_HAVE_CUDA

}  // namespace diffrt::engine
