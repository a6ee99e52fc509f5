// diffrt C API (diffrt.h) over the C++ API (diffrt.hpp). Each entry point checks its handles and
// struct sizes, converts the C structs, calls the C++ object inside `guarded`, and turns every
// exception into a status code plus a thread-local message. Nothing here allocates on the error
// path (the message buffer is a fixed thread-local array), so even bad_alloc is reported.
// Tested by tests/api_test.cpp, tests/concurrency_test.cpp and tests/api_example/example.c.
#include "runtime/api/diffrt.h"

#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "runtime/api/diffrt.hpp"

using diffrt::ErrorCode;

static_assert(int(DIFFRT_E_INVALID_ARGUMENT) == int(ErrorCode::InvalidArgument), "status codes drifted");
static_assert(int(DIFFRT_E_INVALID_MODEL) == int(ErrorCode::InvalidModel), "status codes drifted");
static_assert(int(DIFFRT_E_UNSUPPORTED) == int(ErrorCode::Unsupported), "status codes drifted");
static_assert(int(DIFFRT_E_IO) == int(ErrorCode::Io), "status codes drifted");
static_assert(int(DIFFRT_E_OUT_OF_MEMORY) == int(ErrorCode::OutOfMemory), "status codes drifted");
static_assert(int(DIFFRT_E_CUDA) == int(ErrorCode::Cuda), "status codes drifted");
static_assert(int(DIFFRT_E_CANCELLED) == int(ErrorCode::Cancelled), "status codes drifted");
static_assert(int(DIFFRT_E_INTERNAL) == int(ErrorCode::Internal), "status codes drifted");

namespace {

// The header's version macros must match the project version the library is built with.
constexpr int version_part(const char* s, int index) {
  int part = 0, v = 0;
  for (; *s; ++s) {
    if (*s == '.') {
      if (part == index) return v;
      ++part;
      v = 0;
    } else {
      v = v * 10 + (*s - '0');
    }
  }
  return part == index ? v : -1;
}
static_assert(version_part(DIFFRT_VERSION_STRING, 0) == DIFFRT_VERSION_MAJOR &&
                  version_part(DIFFRT_VERSION_STRING, 1) == DIFFRT_VERSION_MINOR &&
                  version_part(DIFFRT_VERSION_STRING, 2) == DIFFRT_VERSION_PATCH,
              "diffrt.h DIFFRT_VERSION_* disagree with the CMake project version");

constexpr uint32_t kModelMagic = 0x4d545244;    // "DRTM"
constexpr uint32_t kSessionMagic = 0x53545244;  // "DRTS"
constexpr uint32_t kDeadMagic = 0xdeadd00d;

thread_local char t_message[4096];

void set_message(const char* msg) {
  std::strncpy(t_message, msg, sizeof(t_message) - 1);
  t_message[sizeof(t_message) - 1] = '\0';
}

diffrt_status fail_with(diffrt_status s, const char* msg) {
  set_message(msg);
  return s;
}

// Runs f, mapping every exception to a status; the message is left "" on success.
template <class F>
diffrt_status guarded(F&& f) noexcept {
  try {
    f();
    t_message[0] = '\0';
    return DIFFRT_OK;
  } catch (const diffrt::Error& e) {
    const int code = int(e.code());
    return fail_with(code >= 1 && code <= int(DIFFRT_E_INTERNAL) ? diffrt_status(code) : DIFFRT_E_INTERNAL, e.what());
  } catch (const std::bad_alloc&) {
    return fail_with(DIFFRT_E_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    set_message("internal error: ");
    std::strncat(t_message, e.what(), sizeof(t_message) - std::strlen(t_message) - 1);
    return DIFFRT_E_INTERNAL;
  } catch (...) {
    return fail_with(DIFFRT_E_INTERNAL, "internal error: unknown exception");
  }
}

[[noreturn]] void bad(const std::string& msg) { diffrt::fail(ErrorCode::InvalidArgument, msg); }

// A C caller may store any int in an enum field; reading it as the C++ enum type would be UB for
// values outside the enumerators' range, so enum inputs are read as their int bytes.
template <class E>
int enum_int(const E& e) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Copies a caller's size-prefixed struct over `defaults`: struct_size must lie between the first
// published size of the struct and the size this library knows.
template <class T>
T read_versioned(const T* in, const T& defaults, size_t first_size, const char* what) {
  if (!in) bad(std::string(what) + " is NULL");
  if (in->struct_size < first_size || in->struct_size > sizeof(T))
    bad(std::string(what) + "->struct_size = " + std::to_string(in->struct_size) + " is not a size this library " +
        "knows (" + std::to_string(first_size) + ".." + std::to_string(sizeof(T)) + "); call the *_init function first");
  T out = defaults;
  std::memcpy(static_cast<void*>(&out), in, in->struct_size);
  return out;
}

// First published sizes (version 0.1). Fields added later go at the end; these stay.
constexpr size_t kModelInfoV1 = sizeof(diffrt_model_info);
constexpr size_t kSessionOptionsV1 = sizeof(diffrt_session_options);
constexpr size_t kSampleParamsV1 = sizeof(diffrt_sample_params);

}  // namespace

struct diffrt_model {
  uint32_t magic = kModelMagic;
  std::shared_ptr<const diffrt::Model> model;
};

struct diffrt_session {
  uint32_t magic = kSessionMagic;
  std::unique_ptr<diffrt::Session> session;
};

namespace {

const diffrt::Model& model_of(const diffrt_model* m) {
  if (!m) bad("model is NULL");
  if (m->magic != kModelMagic) bad("model is not a live diffrt_model handle (freed or not a model)");
  return *m->model;
}

diffrt::Session& session_of(diffrt_session* s) {
  if (!s) bad("session is NULL");
  if (s->magic != kSessionMagic) bad("session is not a live diffrt_session handle (freed or not a session)");
  return *s->session;
}

diffrt::SampleOptions to_options(const diffrt_sample_params* in) {
  diffrt_sample_params d;
  diffrt_params_init(&d);
  const diffrt_sample_params p = read_versioned(in, d, kSampleParamsV1, "params");
  diffrt::SampleOptions o;
  switch (enum_int(p.sampler)) {
    case DIFFRT_SAMPLER_DEFAULT: o.sampler = diffrt::Sampler::Default; break;
    case DIFFRT_SAMPLER_DDPM: o.sampler = diffrt::Sampler::Ddpm; break;
    case DIFFRT_SAMPLER_DDIM: o.sampler = diffrt::Sampler::Ddim; break;
    default: bad("params->sampler = " + std::to_string(enum_int(p.sampler)) + " is not a diffrt_sampler");
  }
  if (p.steps == DIFFRT_STEPS_DEFAULT) o.steps = 0;
  else if (p.steps < 1) bad("params->steps = " + std::to_string(p.steps) + " must be >= 1 (or DIFFRT_STEPS_DEFAULT)");
  else o.steps = p.steps;
  o.eta = p.eta;
  o.seed = p.seed;
  switch (enum_int(p.rng)) {
    case DIFFRT_RNG_PHILOX: o.rng = diffrt::Rng::Philox; break;
    case DIFFRT_RNG_TORCH: o.rng = diffrt::Rng::Torch; break;
    default: bad("params->rng = " + std::to_string(enum_int(p.rng)) + " is not a diffrt_rng");
  }
  o.first_sample_index = p.first_sample_index;
  o.batch = p.batch;
  if (p.height < 0 || p.width < 0)
    bad("params->height/width = " + std::to_string(p.height) + "x" + std::to_string(p.width) +
        " must be positive (0: the model's sample_size)");
  o.height = p.height;
  o.width = p.width;
  if (p.num_class_labels && !p.class_labels) bad("params->class_labels is NULL but num_class_labels > 0");
  if (!p.num_class_labels && p.class_labels) bad("params->class_labels is set but num_class_labels is 0");
  if (p.num_class_labels > size_t(diffrt::kMaxBatch))
    bad("params->num_class_labels = " + std::to_string(p.num_class_labels) + " exceeds the batch limit " +
        std::to_string(diffrt::kMaxBatch));
  if (p.num_class_labels) o.class_labels.assign(p.class_labels, p.class_labels + p.num_class_labels);
  o.guidance_scale = p.guidance_scale;
  if (p.scheduler_config_json) o.scheduler_overrides = p.scheduler_config_json;
  if (p.scheduler_config_json && o.scheduler_overrides.empty())
    bad("params->scheduler_config_json is an empty string (use NULL for the model's config)");
  if (p.progress) {
    const diffrt_progress_fn fn = p.progress;
    void* user = p.user;
    o.progress = [fn, user](int step, int total) { return fn(step, total, user) == 0; };
  }
  return o;
}

}  // namespace

extern "C" {

const char* diffrt_last_error(void) { return t_message; }

const char* diffrt_status_name(diffrt_status status) {
  switch (enum_int(status)) {
    case DIFFRT_OK: return "DIFFRT_OK";
    case DIFFRT_E_INVALID_ARGUMENT: return "DIFFRT_E_INVALID_ARGUMENT";
    case DIFFRT_E_INVALID_MODEL: return "DIFFRT_E_INVALID_MODEL";
    case DIFFRT_E_UNSUPPORTED: return "DIFFRT_E_UNSUPPORTED";
    case DIFFRT_E_IO: return "DIFFRT_E_IO";
    case DIFFRT_E_OUT_OF_MEMORY: return "DIFFRT_E_OUT_OF_MEMORY";
    case DIFFRT_E_CUDA: return "DIFFRT_E_CUDA";
    case DIFFRT_E_CANCELLED: return "DIFFRT_E_CANCELLED";
    case DIFFRT_E_INTERNAL: return "DIFFRT_E_INTERNAL";
  }
  return "unknown status";
}

void diffrt_version(int* major, int* minor, int* patch) { diffrt::version(major, minor, patch); }
const char* diffrt_version_string(void) { return diffrt::version_string(); }

diffrt_status diffrt_model_load(const char* path, diffrt_model** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!out) bad("out is NULL");
    if (!path) bad("path is NULL");
    auto h = std::make_unique<diffrt_model>();
    h->model = diffrt::Model::load(path);
    *out = h.release();
  });
}

void diffrt_model_free(diffrt_model* model) {
  if (!model || model->magic != kModelMagic) return;  // NULL, or best-effort double-free guard
  model->magic = kDeadMagic;
  delete model;
}

void diffrt_model_info_init(diffrt_model_info* info) {
  if (!info) return;
  std::memset(static_cast<void*>(info), 0, sizeof(*info));
  info->struct_size = sizeof(*info);
  info->null_class = -1;
  info->downsample_factor = 1;
}

diffrt_status diffrt_model_get_info(const diffrt_model* model, diffrt_model_info* info) {
  return guarded([&] {
    const diffrt::ModelInfo& mi = model_of(model).info();
    diffrt_model_info d;
    diffrt_model_info_init(&d);
    diffrt_model_info r = read_versioned(info, d, kModelInfoV1, "info");
    r.in_channels = mi.in_channels;
    r.out_channels = mi.out_channels;
    r.sample_size = mi.sample_size;
    r.downsample_factor = mi.downsample_factor;
    r.num_classes = mi.num_classes;
    r.null_class = mi.null_class;
    r.num_train_timesteps = mi.num_train_timesteps;
    std::memcpy(static_cast<void*>(info), &r, info->struct_size);  // only the fields the caller has
  });
}

void diffrt_session_options_init(diffrt_session_options* options) {
  if (!options) return;
  std::memset(static_cast<void*>(options), 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->device = DIFFRT_DEVICE_CPU;
}

diffrt_status diffrt_session_create(diffrt_model* model, const diffrt_session_options* options,
                                    diffrt_session** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!out) bad("out is NULL");
    model_of(model);
    diffrt_session_options d;
    diffrt_session_options_init(&d);
    const diffrt_session_options o = options ? read_versioned(options, d, kSessionOptionsV1, "options") : d;
    diffrt::SessionOptions so;
    switch (enum_int(o.device)) {
      case DIFFRT_DEVICE_CPU: so.device = diffrt::Device::Cpu; break;
      case DIFFRT_DEVICE_CUDA: so.device = diffrt::Device::Cuda; break;
      default: bad("options->device = " + std::to_string(enum_int(o.device)) + " is not a diffrt_device");
    }
    so.threads = o.threads;
    so.memory_limit_bytes = o.memory_limit_bytes;
    auto h = std::make_unique<diffrt_session>();
    h->session = std::make_unique<diffrt::Session>(model->model, so);
    *out = h.release();
  });
}

diffrt_status diffrt_session_free(diffrt_session* session) {
  if (!session) {
    t_message[0] = '\0';
    return DIFFRT_OK;
  }
  return guarded([&] {
    if (session_of(session).busy()) bad("session_free: the session is running a call (e.g. from its own progress callback)");
    session->magic = kDeadMagic;
    delete session;
  });
}

diffrt_status diffrt_session_release_cache(diffrt_session* session) {
  return guarded([&] { session_of(session).release_cache(); });
}

void diffrt_params_init(diffrt_sample_params* params) {
  if (!params) return;
  std::memset(static_cast<void*>(params), 0, sizeof(*params));
  params->struct_size = sizeof(*params);
  params->sampler = DIFFRT_SAMPLER_DEFAULT;
  params->steps = DIFFRT_STEPS_DEFAULT;
  params->rng = DIFFRT_RNG_PHILOX;
  params->batch = 1;
  params->guidance_scale = 1.0f;
}

diffrt_status diffrt_sample_output_size(diffrt_session* session, const diffrt_sample_params* params,
                                        size_t* out_floats) {
  if (out_floats) *out_floats = 0;
  return guarded([&] {
    diffrt::Session& s = session_of(session);
    if (!out_floats) bad("out_floats is NULL");
    *out_floats = s.output_shape(to_options(params)).numel();
  });
}

diffrt_status diffrt_sample(diffrt_session* session, const diffrt_sample_params* params, float* out_images,
                            size_t out_capacity_floats, size_t* out_written) {
  if (out_written) *out_written = 0;
  return guarded([&] {
    diffrt::Session& s = session_of(session);
    const diffrt::SampleOptions o = to_options(params);
    const size_t need = s.output_shape(o).numel();
    if (!out_images || out_capacity_floats < need) {
      if (out_written) *out_written = need;
      bad(std::string(out_images ? "out_capacity_floats = " + std::to_string(out_capacity_floats) + " is too small"
                                 : "out_images is NULL") +
          ": the images need " + std::to_string(need) + " floats");
    }
    s.sample_into(o, out_images, out_capacity_floats);
    if (out_written) *out_written = need;
  });
}

diffrt_status diffrt_eval(diffrt_session* session, const float* sample, int n, int h, int w, const float* timesteps,
                          const int32_t* class_labels, float* out, size_t out_capacity_floats, size_t* out_written) {
  if (out_written) *out_written = 0;
  return guarded([&] {
    diffrt::Session& s = session_of(session);
    const size_t need = s.eval_output_size(n, h, w);
    if (!out || out_capacity_floats < need) {
      if (out_written) *out_written = need;
      bad(std::string(out ? "out_capacity_floats = " + std::to_string(out_capacity_floats) + " is too small"
                          : "out is NULL") +
          ": the output needs " + std::to_string(need) + " floats");
    }
    s.eval_into(sample, n, h, w, timesteps, class_labels, out, out_capacity_floats);
    if (out_written) *out_written = need;
  });
}

}  // extern "C"
