// diffrt C++ API (diffrt.hpp): Session, the per-thread front of one backend (backend_cpu.cpp, backend_cuda.cpp).
// A call: busy flag -> validate (request.cpp) -> estimate memory -> session limit -> free device memory ->
// output capacity -> run on the backend -> map to the caller's layout. Host allocation failures anywhere become
// Error(OutOfMemory) with the estimate; the backends do the same for device allocations. Nothing a call leaves
// behind keeps the session from serving the next one.
// Tested by tests/api_test.cpp (through the C API), tests/concurrency_test.cpp and tests/gpu/api_test.cpp.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>

#include "api/api_internal.h"
#include "base/layout.h"

namespace diffrt {

namespace {

using api::bad;
using api::bytes_str;

// Sets the calling thread's OpenMP thread count for one call and restores it after.
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int threads) : prev_(omp_get_max_threads()), set_(threads > 0) {
    if (set_) omp_set_num_threads(threads);
  }
  ~OmpThreadsScope() { if (set_) omp_set_num_threads(prev_); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int prev_;
  bool set_;
};

// Marks a session busy for the duration of one call; a second, overlapping call is refused.
class BusyScope {
 public:
  explicit BusyScope(std::atomic<bool>& flag) : flag_(flag) {
    bool expected = false;
    if (!flag_.compare_exchange_strong(expected, true, std::memory_order_acquire))
      bad("session is busy: another call on this session is running (a session serves one call at a "
          "time; use one session per thread, and do not re-enter it from its progress callback)");
  }
  ~BusyScope() { flag_.store(false, std::memory_order_release); }
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;

 private:
  std::atomic<bool>& flag_;
};

}  // namespace

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionOptions options;
  std::unique_ptr<api::Backend> backend;
  std::atomic<bool> busy{false};

  // Validates the request and checks its memory estimate against the session's limit and the device.
  api::Prepared prepare_checked(const SampleOptions& o) {
    api::Prepared p = api::prepare(*model, o);
    const uint64_t need = backend->estimate(p);
    if (options.memory_limit_bytes && need > options.memory_limit_bytes)
      fail(ErrorCode::OutOfMemory, "out of memory: the request needs about " + bytes_str(need) + " of working memory on " +
                                       backend->name() + ", above the session's memory limit of " +
                                       bytes_str(options.memory_limit_bytes) + " (use a smaller batch or size)");
    if (options.memory_preflight) backend->preflight(need);
    p.estimated_bytes = need;
    return p;
  }

  void run_into(const api::Prepared& p, const SampleOptions& o, float* out);
};

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options) : impl_(std::make_unique<Impl>()) {
  if (!model) bad("session: model is null");
  if (options.threads < 0 || options.threads > 1024)
    bad("threads = " + std::to_string(options.threads) + " must be in [0, 1024] (0: the OpenMP default)");
  impl_->options = options;
  switch (options.device) {
    case Device::Cpu: impl_->backend = api::make_cpu_backend(model, options); break;
    case Device::Cuda: impl_->backend = api::make_cuda_backend(model, options); break;
    default: bad("device: unknown value " + std::to_string(int(options.device)));
  }
  impl_->model = std::move(model);
}

Session::~Session() = default;

const Model& Session::model() const { return *impl_->model; }
Device Session::device() const { return impl_->backend->device(); }
bool Session::busy() const { return impl_->busy.load(std::memory_order_acquire); }
size_t Session::cached_executors() const { return impl_->backend->cached_executors(); }

void Session::release_cache() {
  BusyScope busy(impl_->busy);
  impl_->backend->release_cache();
}

ImageShape Session::output_shape(const SampleOptions& o) const { return api::prepare(*impl_->model, o).out; }

uint64_t Session::memory_estimate(const SampleOptions& o) const {
  return impl_->backend->estimate(api::prepare(*impl_->model, o));
}

std::vector<float> Session::sample(const SampleOptions& o) {
  BusyScope busy(impl_->busy);
  const api::Prepared p = impl_->prepare_checked(o);  // before allocating the output
  std::vector<float> out;
  try {
    out.resize(p.out.numel());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory allocating the output (" +
                                     bytes_str(uint64_t(p.out.numel()) * sizeof(float)) + ")");
  }
  impl_->run_into(p, o, out.data());
  return out;
}

void Session::sample_into(const SampleOptions& o, float* out, size_t capacity_floats) {
  BusyScope busy(impl_->busy);
  const api::Prepared p = impl_->prepare_checked(o);
  const size_t need = p.out.numel();
  if (!out) bad("output buffer is null");
  if (capacity_floats < need)
    bad("output buffer holds " + std::to_string(capacity_floats) + " floats, the result needs " + std::to_string(need));
  impl_->run_into(p, o, out);
}

void Session::Impl::run_into(const api::Prepared& p, const SampleOptions& o, float* out) {
  const size_t need = p.out.numel();
  OmpThreadsScope threads(options.threads);
  try {
    const std::vector<float> context = api::text_context(p, o);
    ProgressFn progress;
    if (o.progress) progress = [&](int step, int total) { return o.progress(step, total); };
    const std::vector<float> x = backend->run(p, context, progress);
    if (x.size() != need) fail(ErrorCode::Internal, "backend returned " + std::to_string(x.size()) + " values, expected " +
                                                        std::to_string(need));
    if (p.out.latents) {
      // NHWC -> NCHW, unscaled, as diffusers' output_type="latent".
      const ImageShape& s = p.out;
      const size_t hw = size_t(s.height) * size_t(s.width);
      for (size_t n = 0; n < size_t(s.batch); ++n)
        for (size_t i = 0; i < hw; ++i)
          for (size_t c = 0; c < size_t(s.channels); ++c)
            out[(n * size_t(s.channels) + c) * hw + i] = x[(n * hw + i) * size_t(s.channels) + c];
    } else {
      // (x / 2 + 0.5).clamp(0, 1), as runtime/sampler.h's to_image_01.
      for (size_t i = 0; i < need; ++i) out[i] = std::min(std::max(x[i] / 2.0f + 0.5f, 0.0f), 1.0f);
    }
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory while sampling on " + backend->name() +
                                     " (the request needs about " + bytes_str(p.estimated_bytes) + ")");
  }
}

size_t Session::eval_output_size(int n, int h, int w) const {
  const ModelInfo& info = impl_->model->info();
  if (info.context_dim > 0)
    fail(ErrorCode::Unsupported, "eval: this model is text-conditioned and eval takes no encoder hidden states; "
                                 "sample through diffrt_sample, or use `diffrt eval --encoder-hidden-states`");
  if (n < 1 || n > kMaxBatch) bad("eval: n = " + std::to_string(n) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  auto check = [&](const char* what, int v) {
    if (v < 1 || v > 8192) bad(std::string("eval: ") + what + " = " + std::to_string(v) + " must be in [1, 8192]");
    if (v % info.downsample_factor != 0)
      bad(std::string("eval: ") + what + " = " + std::to_string(v) + " is not a multiple of the model's downsample factor " +
          std::to_string(info.downsample_factor));
  };
  check("height", h);
  check("width", w);
  return size_t(n) * size_t(info.out_channels) * size_t(h) * size_t(w);
}

std::vector<float> Session::eval(const float* sample, int n, int h, int w, const float* timesteps,
                                 const int32_t* class_labels) {
  std::vector<float> out(eval_output_size(n, h, w));
  eval_into(sample, n, h, w, timesteps, class_labels, out.data(), out.size());
  return out;
}

void Session::eval_into(const float* sample, int n, int h, int w, const float* timesteps,
                        const int32_t* class_labels, float* out, size_t capacity_floats) {
  BusyScope busy(impl_->busy);
  const ModelInfo& info = impl_->model->info();
  const size_t need = eval_output_size(n, h, w);
  if (!sample) bad("eval: sample is null");
  if (!timesteps) bad("eval: timesteps is null");
  if (!out) bad("eval: output buffer is null");
  if (capacity_floats < need)
    bad("eval: output buffer holds " + std::to_string(capacity_floats) + " floats, the result needs " + std::to_string(need));
  for (int i = 0; i < n; ++i)
    if (!std::isfinite(timesteps[i])) bad("eval: timesteps[" + std::to_string(i) + "] is not finite");
  if (info.num_classes > 0 && !class_labels) bad("eval: this model is class-conditional: class_labels are required");
  if (info.num_classes == 0 && class_labels) bad("eval: this model is not class-conditional: pass no class_labels");
  for (int i = 0; class_labels && i < n; ++i)
    if (class_labels[i] < 0 || class_labels[i] >= info.num_classes)
      bad("eval: class_labels[" + std::to_string(i) + "] = " + std::to_string(class_labels[i]) + " out of range [0, " +
          std::to_string(info.num_classes - 1) + "]");
  OmpThreadsScope threads(impl_->options.threads);
  try {
    const size_t in_count = size_t(n) * size_t(info.in_channels) * size_t(h) * size_t(w);
    const std::vector<float> x = nchw_to_nhwc(std::vector<float>(sample, sample + in_count), n, info.in_channels, h, w);
    std::vector<float> y(need);
    impl_->backend->eval(x.data(), n, h, w, timesteps, class_labels, y.data());
    const std::vector<float> y_nchw = nhwc_to_nchw(y, n, h, w, info.out_channels);
    std::copy(y_nchw.begin(), y_nchw.end(), out);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "eval: out of host memory for batch " + std::to_string(n) + " at " +
                                     std::to_string(h) + "x" + std::to_string(w));
  }
}

}  // namespace diffrt
