// diffrt C++ API (diffrt.hpp): Model (file + fp32 weights, loaded once, shared read-only) and
// Session (per-thread state: a small cache of CPU executors keyed by (model batch, h, w), the
// OpenMP thread count, a busy flag). The request checks here are the same as `diffrt sample`'s
// (runtime/cli/cmd_sample.cpp), so the CLI and the API accept and refuse the same requests.
// Tested by tests/api_test.cpp (through the C API) and tests/concurrency_test.cpp.
#include "runtime/api/diffrt.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <list>
#include <new>
#include <tuple>

#include "runtime/cpu_executor.h"
#include "runtime/format/json_fields.h"
#include "runtime/format/model_file.h"
#include "runtime/layout.h"
#include "runtime/plan.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"

namespace diffrt {

namespace {

constexpr size_t kMaxCachedExecutors = 4;
constexpr size_t kMaxSchedulerJsonBytes = 1 << 20;

[[noreturn]] void bad(const std::string& msg) { fail(ErrorCode::InvalidArgument, msg); }

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

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

}  // namespace

// ---- version -----------------------------------------------------------------------------------

const char* version_string() { return DIFFRT_VERSION_STRING; }

void version(int* major, int* minor, int* patch) {
  int parts[3] = {0, 0, 0};
  const char* s = DIFFRT_VERSION_STRING;
  for (int i = 0; i < 3 && *s; ++i) {
    while (*s >= '0' && *s <= '9') parts[i] = parts[i] * 10 + (*s++ - '0');
    if (*s == '.') ++s;
  }
  if (major) *major = parts[0];
  if (minor) *minor = parts[1];
  if (patch) *patch = parts[2];
}

// ---- Model -------------------------------------------------------------------------------------

struct Model::Impl {
  ModelFile file;
  std::unique_ptr<CpuWeights> weights;
  ModelInfo info;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const ModelInfo& Model::info() const { return impl_->info; }

std::shared_ptr<const Model> Model::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->file = read_model_file(path);
    impl->weights = std::make_unique<CpuWeights>(impl->file);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, path + ": out of host memory while loading the model");
  }
  const ModelFile& mf = impl->file;
  ModelInfo& in = impl->info;
  in.in_channels = mf.graph.in_channels;
  in.out_channels = mf.graph.out_channels;
  const auto ss = mf.config.find("sample_size");
  if (ss != mf.config.end() && ss->is_number_integer() && ss->get<int64_t>() > 0 && ss->get<int64_t>() <= 8192)
    in.sample_size = ss->get<int>();
  in.downsample_factor = std::max(1, mf.graph.downsample_factor);
  in.num_classes = mf.conditioning.num_classes;
  in.null_class = mf.conditioning.null_class;
  const nlohmann::json sj = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  try {
    in.num_train_timesteps = scheduler_config_from_json(sj, path + " (scheduler)").num_train_timesteps;
  } catch (const Error&) {
    in.num_train_timesteps = 0;  // reported when sampling without an override that fixes it
  }
  in.default_sampler = sj.value("_class_name", nlohmann::json("")) == "DDIMScheduler" ? "ddim" : "ddpm";
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

// ---- Session -----------------------------------------------------------------------------------

namespace {

// A validated request: what run_sampler needs plus the model batch (2B with guidance).
struct Prepared {
  SchedulerConfig sched;
  SampleRequest req;
  int model_batch = 0;
  uint64_t estimated_bytes = 0;
};

nlohmann::json merged_scheduler_json(const ModelFile& mf, const std::string& overrides) {
  nlohmann::json j = mf.scheduler.is_object() ? mf.scheduler : nlohmann::json::object();
  if (overrides.empty()) return j;
  if (overrides.size() > kMaxSchedulerJsonBytes) bad("scheduler config override: larger than 1 MiB");
  nlohmann::json o;
  try {
    o = parse_json_strict(overrides, "scheduler config override");
  } catch (const Error& e) {
    bad(e.what());
  }
  if (!o.is_object()) bad("scheduler config override: expected a JSON object, got " + std::string(o.type_name()));
  for (auto it = o.begin(); it != o.end(); ++it) j[it.key()] = it.value();
  return j;
}

void check_size(const char* what, int v, int factor) {
  if (v < 1 || v > 8192) bad(std::string(what) + " = " + std::to_string(v) + " must be in [1, 8192]");
  if (v % factor != 0)
    bad(std::string(what) + " = " + std::to_string(v) + " is not a multiple of the model's downsample factor " +
        std::to_string(factor) + " (nearest valid: " + std::to_string(std::max(factor, v / factor * factor)) + " or " +
        std::to_string((v / factor + 1) * factor) + ")");
}

Prepared prepare(const Model& model, const ModelFile& mf, const SessionOptions& so, const SampleOptions& o) {
  const ModelInfo& info = model.info();
  Prepared p;
  SampleRequest& r = p.req;
  if (o.batch < 1 || o.batch > kMaxBatch)
    bad("batch = " + std::to_string(o.batch) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  r.batch = o.batch;
  r.height = o.height ? o.height : info.sample_size;
  r.width = o.width ? o.width : info.sample_size;
  if (r.height == 0 || r.width == 0) bad("the model has no sample_size: set height and width");
  check_size("height", r.height, info.downsample_factor);
  check_size("width", r.width, info.downsample_factor);
  r.channels = info.in_channels;

  if (!std::isfinite(o.guidance_scale) || o.guidance_scale < 0.0f || o.guidance_scale > kMaxGuidance)
    bad("guidance_scale = " + std::to_string(o.guidance_scale) + " must be a number in [0, 1000]");
  r.guidance_scale = o.guidance_scale;
  if (!std::isfinite(o.eta) || o.eta < 0.0f || o.eta > 1.0f)
    bad("eta = " + std::to_string(o.eta) + " must be in [0, 1]");
  r.eta = o.eta;
  if (o.steps < 0) bad("steps = " + std::to_string(o.steps) + " must be >= 1 (0: the pipeline default)");

  // Labels: one (broadcast) or one per image; each a class of the model.
  if (info.num_classes == 0) {
    if (!o.class_labels.empty()) bad("class_labels given, but this model is not class-conditional");
  } else {
    if (o.class_labels.empty())
      bad("this model is class-conditional (" + std::to_string(info.num_classes) + " classes): give class_labels");
    if (o.class_labels.size() != 1 && o.class_labels.size() != size_t(o.batch))
      bad("class_labels has " + std::to_string(o.class_labels.size()) + " entries: give 1 or batch = " +
          std::to_string(o.batch));
    for (int32_t l : o.class_labels)
      if (l < 0 || l >= info.num_classes)
        bad("class label " + std::to_string(l) + " out of range [0, " + std::to_string(info.num_classes - 1) + "]");
    r.class_labels.assign(size_t(o.batch), o.class_labels[0]);
    if (o.class_labels.size() > 1) r.class_labels = o.class_labels;
  }
  r.null_class = info.null_class;
  const bool cfg = r.guidance_scale > 1.0f && !r.class_labels.empty();
  if (cfg && r.null_class < 0)
    bad("guidance_scale > 1 needs a null class; this model file has none (re-convert with --null-class)");
  p.model_batch = cfg ? 2 * r.batch : r.batch;
  if (p.model_batch > kMaxBatch)
    bad("batch = " + std::to_string(r.batch) + " with guidance runs " + std::to_string(p.model_batch) +
        " model rows, above the limit " + std::to_string(kMaxBatch) + " (use batch <= " + std::to_string(kMaxBatch / 2) + ")");

  // Scheduler: the model's config with the caller's keys on top; errors in the caller's keys are
  // argument errors, errors in the model's own config are model errors.
  const nlohmann::json sj = merged_scheduler_json(mf, o.scheduler_overrides);
  try {
    p.sched = scheduler_config_from_json(sj, o.scheduler_overrides.empty() ? "model scheduler config"
                                                                           : "scheduler config (with overrides)");
  } catch (const Error& e) {
    if (!o.scheduler_overrides.empty() && e.code() == ErrorCode::InvalidModel) bad(e.what());
    throw;
  }
  switch (o.sampler) {
    case Sampler::Ddpm: r.sampler = SamplerKind::Ddpm; break;
    case Sampler::Ddim: r.sampler = SamplerKind::Ddim; break;
    case Sampler::Default:
      r.sampler = sj.value("_class_name", nlohmann::json("")) == "DDIMScheduler" ? SamplerKind::Ddim : SamplerKind::Ddpm;
      break;
    default: bad("sampler: unknown value " + std::to_string(int(o.sampler)));
  }
  r.steps = o.steps ? o.steps : (r.sampler == SamplerKind::Ddim ? 50 : 1000);
  if (r.steps > p.sched.num_train_timesteps)
    bad("steps = " + std::to_string(r.steps) + " exceeds num_train_timesteps = " +
        std::to_string(p.sched.num_train_timesteps));
  if (o.rng != Rng::Philox && o.rng != Rng::Torch) bad("rng: unknown value " + std::to_string(int(o.rng)));
  r.rng = o.rng == Rng::Torch ? RngKind::Torch : RngKind::Philox;
  r.seed = o.seed;
  r.first_sample_index = o.first_sample_index;
  validate_sample_request(p.sched, r, info.out_channels);

  // Pre-flight: the executor's arena (planned here, before any allocation) plus the loop's buffers.
  const MemoryPlan plan = plan_memory(mf.graph, p.model_batch, r.height, r.width);
  const uint64_t per = uint64_t(r.height) * uint64_t(r.width);
  const uint64_t loop_elems = per * (uint64_t(r.batch) * r.channels * 4 +                // x, noise, image, copy
                                     uint64_t(p.model_batch) * (r.channels + info.out_channels));  // in/out
  p.estimated_bytes = (plan.arena_elems + plan.conv_scratch_elems + loop_elems) * sizeof(float);
  if (so.memory_limit_bytes && p.estimated_bytes > so.memory_limit_bytes)
    fail(ErrorCode::OutOfMemory, "request needs about " + mib(p.estimated_bytes) + ", above the session's memory limit of " +
                                     mib(so.memory_limit_bytes));
  return p;
}

}  // namespace

struct Session::Impl {
  std::shared_ptr<const Model> model;
  SessionOptions options;
  std::atomic<bool> busy{false};
  // Most recently used first; at most kMaxCachedExecutors.
  std::list<std::pair<std::tuple<int, int, int>, std::unique_ptr<CpuExecutor>>> executors;

  const ModelFile& file() const { return model->impl_->file; }

  CpuExecutor& executor(int n, int h, int w) {
    const auto key = std::make_tuple(n, h, w);
    for (auto it = executors.begin(); it != executors.end(); ++it)
      if (it->first == key) {
        executors.splice(executors.begin(), executors, it);
        return *executors.front().second;
      }
    while (executors.size() >= kMaxCachedExecutors) executors.pop_back();
    std::unique_ptr<CpuExecutor> ex;
    try {
      ex = std::make_unique<CpuExecutor>(file(), *model->impl_->weights, n, h, w);
    } catch (const std::bad_alloc&) {
      fail(ErrorCode::OutOfMemory, "out of host memory allocating activations for batch " + std::to_string(n) +
                                       " at " + std::to_string(h) + "x" + std::to_string(w));
    }
    executors.emplace_front(key, std::move(ex));
    return *executors.front().second;
  }
};

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options) : impl_(std::make_unique<Impl>()) {
  if (!model) bad("session: model is null");
  if (options.device == Device::Cuda)
    fail(ErrorCode::Unsupported, "device cuda: the CUDA backend is not available in this build yet; use the cpu device");
  if (options.device != Device::Cpu) bad("device: unknown value " + std::to_string(int(options.device)));
  if (options.threads < 0 || options.threads > 1024)
    bad("threads = " + std::to_string(options.threads) + " must be in [0, 1024] (0: the OpenMP default)");
  impl_->model = std::move(model);
  impl_->options = options;
}

Session::~Session() = default;

const Model& Session::model() const { return *impl_->model; }
bool Session::busy() const { return impl_->busy.load(std::memory_order_acquire); }

size_t Session::cached_executors() const { return impl_->executors.size(); }

void Session::release_cache() {
  BusyScope busy(impl_->busy);
  impl_->executors.clear();
}

ImageShape Session::output_shape(const SampleOptions& o) const {
  const Prepared p = prepare(*impl_->model, impl_->file(), impl_->options, o);
  return {p.req.batch, p.req.height, p.req.width, p.req.channels};
}

std::vector<float> Session::sample(const SampleOptions& o) {
  std::vector<float> out;
  try {
    out.resize(output_shape(o).numel());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory allocating the output images");
  }
  sample_into(o, out.data(), out.size());
  return out;
}

void Session::sample_into(const SampleOptions& o, float* out, size_t capacity_floats) {
  BusyScope busy(impl_->busy);
  const Prepared p = prepare(*impl_->model, impl_->file(), impl_->options, o);
  const size_t need = size_t(p.req.batch) * p.req.height * p.req.width * p.req.channels;
  if (!out) bad("output buffer is null");
  if (capacity_floats < need)
    bad("output buffer holds " + std::to_string(capacity_floats) + " floats, the images need " + std::to_string(need));
  OmpThreadsScope threads(impl_->options.threads);
  try {
    CpuExecutor& ex = impl_->executor(p.model_batch, p.req.height, p.req.width);
    const int bm = p.model_batch;
    UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int n, float* y) {
      if (n != bm) fail(ErrorCode::Internal, "sampler model batch " + std::to_string(n) + " != " + std::to_string(bm));
      ex.run(x, t, labels, y);
    };
    ProgressFn progress;
    if (o.progress) progress = [&](int step, int total) { return o.progress(step, total); };
    const std::vector<float> x = run_sampler(p.sched, p.req, impl_->model->info().out_channels, unet, progress);
    const std::vector<float> img = to_image_01(x);
    std::copy(img.begin(), img.end(), out);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory while sampling (estimated need " + mib(p.estimated_bytes) + ")");
  }
}

size_t Session::eval_output_size(int n, int h, int w) const {
  const ModelInfo& info = impl_->model->info();
  if (n < 1 || n > kMaxBatch) bad("eval: n = " + std::to_string(n) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  check_size("eval: height", h, info.downsample_factor);
  check_size("eval: width", w, info.downsample_factor);
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
    impl_->executor(n, h, w).run(x.data(), timesteps, class_labels, y.data());
    const std::vector<float> y_nchw = nhwc_to_nchw(y, n, h, w, info.out_channels);
    std::copy(y_nchw.begin(), y_nchw.end(), out);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "eval: out of host memory for batch " + std::to_string(n) + " at " +
                                     std::to_string(h) + "x" + std::to_string(w));
  }
}

}  // namespace diffrt
