// diffrt C++ API (diffrt.hpp): Session, the per-thread front of one engine backend (runtime/engine).
// A sample call: busy flag -> validate (request.cpp) -> estimate memory -> session limit -> free device memory ->
// output capacity -> text context (prompt embeddings, or the prompts through the backend's text encoder) -> run
// on the backend -> map to the caller's layout. Host allocation failures anywhere become Error(OutOfMemory) with
// the estimate; the backends do the same for device allocations. Nothing a call leaves behind keeps the session
// from serving the next one.
// Tested by tests/api_test.cpp (through the C API), tests/api_text_test.cpp, tests/concurrency_test.cpp,
// tests/gpu/api_test.cpp and every CLI test (the diffrt command runs on this API).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <new>

#include "api/api_internal.h"
#include "base/layout.h"

namespace diffrt {

using api::bad;
using api::bytes_str;

namespace api {

OmpThreadsScope::OmpThreadsScope(int threads) : prev_(omp_get_max_threads()), set_(threads > 0) {
  if (set_) omp_set_num_threads(threads);
}
OmpThreadsScope::~OmpThreadsScope() {
  if (set_) omp_set_num_threads(prev_);
}

}  // namespace api

namespace {

// Validates the request and checks its memory estimate against the session's limit and the device.
api::Prepared prepare_checked(Session::Impl& s, const SampleOptions& o) {
  api::Prepared p = api::prepare(*s.model, o);
  const uint64_t need = s.backend->estimate(p.job);
  if (s.options.memory_limit_bytes && need > s.options.memory_limit_bytes)
    fail(ErrorCode::OutOfMemory, "out of memory: the request needs about " + bytes_str(need) + " of working memory on " +
                                     s.backend->name() + ", above the session's memory limit of " +
                                     bytes_str(s.options.memory_limit_bytes) + " (use a smaller batch or size)");
  if (s.options.memory_preflight) s.backend->preflight(need);
  p.job.estimated_bytes = need;
  return p;
}

TextEncodeFn text_encoder(engine::Backend& b) {
  return [&b](const std::vector<int32_t>& ids, int batch, int len) { return b.encode_text(ids, batch, len); };
}

void run_into(Session::Impl& s, api::Prepared& p, const SampleOptions& o, float* out) {
  const size_t need = p.out.numel();
  api::OmpThreadsScope threads(s.options.threads);
  try {
    api::fill_text_context(*s.model, o, text_encoder(*s.backend), p.job);
    ProgressFn progress;
    if (o.progress) progress = [&](int step, int total) { return o.progress(step, total); };
    const std::vector<float> x = s.backend->run(p.job, progress);
    if (x.size() != need) fail(ErrorCode::Internal, "backend returned " + std::to_string(x.size()) + " values, expected " +
                                                        std::to_string(need));
    if (p.out.latents) {
      // NHWC -> NCHW, unscaled, as diffusers' output_type="latent".
      const ImageShape& sh = p.out;
      nhwc_to_nchw_into(x.data(), sh.batch, sh.height, sh.width, sh.channels, out);
    } else {
      // (x / 2 + 0.5).clamp(0, 1), diffusers' image post-processing before PIL.
      for (size_t i = 0; i < need; ++i) out[i] = std::min(std::max(x[i] / 2.0f + 0.5f, 0.0f), 1.0f);
    }
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory while sampling on " + s.backend->name() +
                                     " (the request needs about " + bytes_str(p.job.estimated_bytes) + ")");
  }
}

}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options) : impl_(std::make_unique<Impl>()) {
  if (!model) bad("session: model is null");
  if (options.threads < 0 || options.threads > 1024)
    bad("threads = " + std::to_string(options.threads) + " must be in [0, 1024] (0: the OpenMP default)");
  engine::BackendOptions bo;
  switch (options.device) {
    case Device::Cpu: bo.device = engine::DeviceKind::Cpu; break;
    case Device::Cuda: bo.device = engine::DeviceKind::Cuda; break;
    default: bad("device: unknown value " + std::to_string(int(options.device)));
  }
  if (options.device == Device::Cuda) {
    std::string why;
    const int n = engine::cuda_device_count(&why);
    if (n == 0) fail(ErrorCode::Unsupported, "device cuda: " + why + "; use the cpu device");
    if (options.device_ordinal < 0 || options.device_ordinal >= n)
      bad("device_ordinal = " + std::to_string(options.device_ordinal) + ": this machine has " + std::to_string(n) +
          " CUDA device(s), [0, " + std::to_string(n - 1) + "]");
  }
  bo.device_ordinal = options.device_ordinal;
  bo.deterministic = options.deterministic;
  impl_->options = options;
  impl_->backend = engine::make_backend(ModelAccess::impl(*model).loaded, bo);
  impl_->model = std::move(model);
}

Session::~Session() = default;

const Model& Session::model() const { return *impl_->model; }
Device Session::device() const { return impl_->backend->device() == engine::DeviceKind::Cuda ? Device::Cuda : Device::Cpu; }
bool Session::busy() const { return impl_->busy.load(std::memory_order_acquire); }
size_t Session::cached_executors() const { return impl_->backend->cached_executors(); }

void Session::release_cache() {
  api::BusyScope busy(impl_->busy);
  impl_->backend->release_cache();
}

ImageShape Session::output_shape(const SampleOptions& o) const { return api::prepare(*impl_->model, o).out; }

SampleDescription Session::describe(const SampleOptions& o) const { return api::prepare(*impl_->model, o).description; }

uint64_t Session::memory_estimate(const SampleOptions& o) const {
  return impl_->backend->estimate(api::prepare(*impl_->model, o).job);
}

std::vector<float> Session::sample(const SampleOptions& o) {
  api::BusyScope busy(impl_->busy);
  api::Prepared p = prepare_checked(*impl_, o);  // before allocating the output
  std::vector<float> out;
  try {
    out.resize(p.out.numel());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "out of host memory allocating the output (" +
                                     bytes_str(uint64_t(p.out.numel()) * sizeof(float)) + ")");
  }
  run_into(*impl_, p, o, out.data());
  return out;
}

void Session::sample_into(const SampleOptions& o, float* out, size_t capacity_floats) {
  api::BusyScope busy(impl_->busy);
  api::Prepared p = prepare_checked(*impl_, o);
  const size_t need = p.out.numel();
  if (!out) bad("output buffer is null");
  if (capacity_floats < need)
    bad("output buffer holds " + std::to_string(capacity_floats) + " floats, the result needs " + std::to_string(need));
  run_into(*impl_, p, o, out);
}

size_t Session::eval_output_size(int n, int h, int w) const {
  const ModelInfo& info = impl_->model->info();
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
                                 const int32_t* class_labels, const TextEmbeddings& context) {
  std::vector<float> out(eval_output_size(n, h, w));
  eval_into(sample, n, h, w, timesteps, class_labels, out.data(), out.size(), context);
  return out;
}

void Session::eval_into(const float* sample, int n, int h, int w, const float* timesteps, const int32_t* class_labels,
                        float* out, size_t capacity_floats, const TextEmbeddings& context) {
  api::BusyScope busy(impl_->busy);
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
  if (info.context_dim > 0 && context.empty())
    bad("eval: this model is text-conditioned: give encoder_hidden_states [n, len, " + std::to_string(info.context_dim) +
        "] (e.g. CLIP's last_hidden_state)");
  if (info.context_dim == 0 && !context.empty()) bad("eval: this model is not text-conditioned: pass no encoder_hidden_states");
  if (!context.empty()) {
    if (!context.data) bad("eval: encoder_hidden_states.data is null");
    if (context.batch != n)
      bad("eval: encoder_hidden_states has batch " + std::to_string(context.batch) + " but the sample has " + std::to_string(n));
    if (context.dim != info.context_dim)
      bad("eval: encoder_hidden_states has dim " + std::to_string(context.dim) + ", the UNet's cross_attention_dim is " +
          std::to_string(info.context_dim));
    if (context.len < 1 || context.len > api::kMaxContextLen)
      bad("eval: encoder_hidden_states has " + std::to_string(context.len) + " tokens, must be in [1, " +
          std::to_string(api::kMaxContextLen) + "]");
    const size_t count = size_t(n) * size_t(context.len) * size_t(context.dim);
    for (size_t i = 0; i < count; ++i)
      if (!std::isfinite(context.data[i])) bad("eval: encoder_hidden_states contains NaN or infinity");
  }
  api::OmpThreadsScope threads(impl_->options.threads);
  try {
    const size_t in_count = size_t(n) * size_t(info.in_channels) * size_t(h) * size_t(w);
    const std::vector<float> x = nchw_to_nhwc(std::vector<float>(sample, sample + in_count), n, info.in_channels, h, w);
    std::vector<float> y(need);
    engine::EvalJob e;
    e.x = x.data();
    e.t = timesteps;
    e.labels = class_labels;
    e.context = context.empty() ? nullptr : context.data;
    e.context_len = context.len;
    e.n = n; e.h = h; e.w = w;
    impl_->backend->eval(e, y.data());
    nhwc_to_nchw_into(y.data(), n, h, w, info.out_channels, out);
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "eval: out of host memory for batch " + std::to_string(n) + " at " +
                                     std::to_string(h) + "x" + std::to_string(w));
  }
}

std::vector<float> Session::decode(const float* latents, int n, int h, int w) {
  api::BusyScope busy(impl_->busy);
  const ModelInfo& info = impl_->model->info();
  if (!info.has_vae) bad("decode: this model file has no VAE decoder");
  if (!latents) bad("decode: latents is null");
  if (n < 1 || n > kMaxBatch) bad("decode: n = " + std::to_string(n) + " must be in [1, " + std::to_string(kMaxBatch) + "]");
  if (h < 1 || w < 1 || h > 1024 || w > 1024)
    bad("decode: latent size " + std::to_string(h) + "x" + std::to_string(w) + " must be in [1, 1024]");
  const int c = info.in_channels;
  const size_t count = size_t(n) * size_t(c) * size_t(h) * size_t(w);
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(latents[i])) bad("decode: latents contain NaN or infinity");
  api::OmpThreadsScope threads(impl_->options.threads);
  std::vector<float> img = impl_->backend->decode(nchw_to_nhwc(std::vector<float>(latents, latents + count), n, c, h, w), n, h, w);
  for (float& v : img) v = std::min(std::max(v / 2.0f + 0.5f, 0.0f), 1.0f);
  return img;
}

std::vector<int32_t> Session::tokenize(const std::vector<std::string>& prompts, int* len) const {
  const ModelFile& mf = ModelAccess::file(*impl_->model);
  if (prompts.empty() || prompts.size() > size_t(kMaxBatch))
    bad("tokenize: give 1 to " + std::to_string(kMaxBatch) + " prompts");
  std::vector<int32_t> ids = tokenize_prompts(mf, prompts);
  if (len) *len = mf.tokenizer.max_length;
  return ids;
}

std::vector<float> Session::encode_prompts(const std::vector<std::string>& prompts, int* len, int* dim) {
  api::BusyScope busy(impl_->busy);
  int L = 0;
  const std::vector<int32_t> ids = tokenize(prompts, &L);
  api::OmpThreadsScope threads(impl_->options.threads);
  TextEmbeds e = impl_->backend->encode_text(ids, int(prompts.size()), L);
  if (len) *len = e.len;
  if (dim) *dim = e.dim;
  return std::move(e.data);
}

}  // namespace diffrt
