// diffrt C API (diffrt.h) over the C++ API (diffrt.hpp). Each entry point checks its handles and
// struct sizes, converts the C structs, calls the C++ object inside `guarded`, and turns every
// exception into a status code plus a thread-local message. Nothing here allocates on the error
// path (the message buffer is a fixed thread-local array), so even bad_alloc is reported.
// Struct versions: each versioned struct lists the sizes it has been published with; a caller's
// struct_size must be one of them, and only the fields that version has are read (or written).
// Tested by tests/api_test.cpp, tests/api_text_test.cpp, tests/concurrency_test.cpp, tests/gpu/api_test.cpp
// and tests/api_example/example.c.
#include "api/diffrt.h"

#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "api/diffrt.hpp"

using diffrt::ErrorCode;

static_assert(int(DIFFRT_E_INVALID_ARGUMENT) == int(ErrorCode::InvalidArgument), "status codes drifted");
static_assert(int(DIFFRT_E_INVALID_MODEL) == int(ErrorCode::InvalidModel), "status codes drifted");
static_assert(int(DIFFRT_E_UNSUPPORTED) == int(ErrorCode::Unsupported), "status codes drifted");
static_assert(int(DIFFRT_E_IO) == int(ErrorCode::Io), "status codes drifted");
static_assert(int(DIFFRT_E_OUT_OF_MEMORY) == int(ErrorCode::OutOfMemory), "status codes drifted");
static_assert(int(DIFFRT_E_CUDA) == int(ErrorCode::Cuda), "status codes drifted");
static_assert(int(DIFFRT_E_CANCELLED) == int(ErrorCode::Cancelled), "status codes drifted");
static_assert(int(DIFFRT_E_INTERNAL) == int(ErrorCode::Internal), "status codes drifted");
static_assert(sizeof(diffrt_status) == sizeof(int) && sizeof(diffrt_device) == sizeof(int) &&
                  sizeof(diffrt_sampler) == sizeof(int) && sizeof(diffrt_rng) == sizeof(int) &&
                  sizeof(diffrt_output) == sizeof(int),
              "C enums must stay int-sized (ABI)");

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

// One published version of a struct: its sizeof in that version's header, and the end of its last
// field (the bytes that carry fields; the rest is trailing padding, whose content is undefined and
// may overlap fields a later version added).
struct StructVersion {
  size_t size, used;
};
constexpr size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
template <class T>
constexpr StructVersion version_ending_at(size_t end) {  // the alignment has not changed since
  return {round_up(end, alignof(T)), end};
}

// Fields added later go at the end; published versions never change.
constexpr StructVersion kModelInfoVersions[] = {
    version_ending_at<diffrt_model_info>(offsetof(diffrt_model_info, num_train_timesteps) + sizeof(int)),  // 0.1
    version_ending_at<diffrt_model_info>(offsetof(diffrt_model_info, default_sampler) + sizeof(diffrt_sampler)),  // 0.2
    version_ending_at<diffrt_model_info>(offsetof(diffrt_model_info, has_text_encoder) + sizeof(int)),     // 0.3
    {sizeof(diffrt_model_info), sizeof(diffrt_model_info)},                                                 // 0.4
};
constexpr StructVersion kSessionOptionsVersions[] = {
    version_ending_at<diffrt_session_options>(offsetof(diffrt_session_options, memory_limit_bytes) + sizeof(uint64_t)),
    {sizeof(diffrt_session_options), sizeof(diffrt_session_options)},
};
constexpr StructVersion kSampleParamsVersions[] = {
    version_ending_at<diffrt_sample_params>(offsetof(diffrt_sample_params, user) + sizeof(void*)),              // 0.1
    version_ending_at<diffrt_sample_params>(offsetof(diffrt_sample_params, output) + sizeof(diffrt_output)),    // 0.2
    version_ending_at<diffrt_sample_params>(offsetof(diffrt_sample_params, sampler_name) + sizeof(const char*)), // 0.3
    {sizeof(diffrt_sample_params), sizeof(diffrt_sample_params)},                                                // 0.4
};
#if defined(__x86_64__) || defined(__aarch64__)
// The LP64 sizes of version 0.1, as compiled by its users: they must never change.
static_assert(kModelInfoVersions[0].size == 40 && kModelInfoVersions[0].used == 36, "diffrt_model_info 0.1 layout");
static_assert(kSessionOptionsVersions[0].size == 24, "diffrt_session_options 0.1 layout");
static_assert(kSampleParamsVersions[0].size == 104, "diffrt_sample_params 0.1 layout");
static_assert(kModelInfoVersions[1].size == 64 && kSampleParamsVersions[1].size == 160, "diffrt 0.2 layouts");
static_assert(kModelInfoVersions[2].size == 72 && kSampleParamsVersions[2].size == 200, "diffrt 0.3 layouts");
#endif

template <size_t N>
size_t used_bytes(size_t struct_size, const StructVersion (&versions)[N], const char* what) {
  std::string known;
  for (const StructVersion& v : versions) {
    if (struct_size == v.size) return v.used;
    known += (known.empty() ? "" : ", ") + std::to_string(v.size);
  }
  bad(std::string(what) + "->struct_size = " + std::to_string(struct_size) + " is not a size this library knows (" +
      known + "); call the *_init function first");
}

// Copies the fields of a caller's size-prefixed struct over `defaults`.
template <class T, size_t N>
T read_versioned(const T* in, const T& defaults, const StructVersion (&versions)[N], const char* what) {
  if (!in) bad(std::string(what) + " is NULL");
  const size_t used = used_bytes(in->struct_size, versions, what);
  T out = defaults;
  std::memcpy(static_cast<void*>(&out), in, used);
  out.struct_size = in->struct_size;
  return out;
}

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

diffrt::TextEmbeddings to_embeds(const diffrt_text_embeds& e, const char* what) {
  const bool none = !e.data && !e.batch && !e.len && !e.dim;
  if (!none && !e.data)
    bad(std::string("params->") + what + ".data is NULL but its shape is [" + std::to_string(e.batch) + ", " +
        std::to_string(e.len) + ", " + std::to_string(e.dim) + "]");
  if (!none && (e.batch < 1 || e.len < 1 || e.dim < 1))
    bad(std::string("params->") + what + " shape [" + std::to_string(e.batch) + ", " + std::to_string(e.len) + ", " +
        std::to_string(e.dim) + "]: batch, len and dim must be >= 1");
  return diffrt::TextEmbeddings{e.data, e.batch, e.len, e.dim};
}

// A C string of at most `max` bytes (untrusted: never read past max + 1 bytes).
std::string bounded_string(const char* s, size_t max, const std::string& what) {
  const void* nul = std::memchr(s, 0, max + 1);
  if (!nul) bad("params->" + what + " is longer than " + std::to_string(max) + " bytes");
  return std::string(s, static_cast<const char*>(nul));
}

std::vector<std::string> to_strings(const char* const* v, size_t n, const char* what) {
  if (n && !v) bad(std::string("params->") + what + " is NULL but its count is " + std::to_string(n));
  if (!n && v) bad(std::string("params->") + what + " is set but its count is 0");
  if (n > size_t(diffrt::kMaxBatch))
    bad(std::string("params->") + what + ": " + std::to_string(n) + " strings, above the limit " +
        std::to_string(diffrt::kMaxBatch));
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string where = std::string(what) + "[" + std::to_string(i) + "]";
    if (!v[i]) bad("params->" + where + " is NULL");
    out.push_back(bounded_string(v[i], 64 << 10, where));
  }
  return out;
}

// diffrt_sampler values 1.. in order: the sampler names they stand for.
constexpr const char* kSamplerNames[] = {"ddpm", "ddim", "pndm", "dpmpp-2m", "dpmpp-2m-sde",
                                         "euler", "euler-a", "heun", "unipc", "lcm"};

diffrt::SampleOptions to_options(const diffrt_sample_params* in) {
  diffrt_sample_params d;
  diffrt_params_init(&d);
  const diffrt_sample_params p = read_versioned(in, d, kSampleParamsVersions, "params");
  diffrt::SampleOptions o;
  const int sampler = enum_int(p.sampler);
  if (sampler == DIFFRT_SAMPLER_DEFAULT) o.sampler.clear();
  else if (sampler > 0 && sampler <= int(std::size(kSamplerNames))) o.sampler = kSamplerNames[sampler - 1];
  else bad("params->sampler = " + std::to_string(sampler) + " is not a diffrt_sampler");
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
  o.prompt_embeds = to_embeds(p.prompt_embeds, "prompt_embeds");
  o.negative_prompt_embeds = to_embeds(p.negative_prompt_embeds, "negative_prompt_embeds");
  switch (enum_int(p.output)) {
    case DIFFRT_OUTPUT_IMAGES: o.output = diffrt::Output::Images; break;
    case DIFFRT_OUTPUT_LATENTS: o.output = diffrt::Output::Latents; break;
    default: bad("params->output = " + std::to_string(enum_int(p.output)) + " is not a diffrt_output");
  }
  o.prompts = to_strings(p.prompts, p.num_prompts, "prompts");
  o.negative_prompts = to_strings(p.negative_prompts, p.num_negative_prompts, "negative_prompts");
  if (p.sampler_name) {
    if (!*p.sampler_name) bad("params->sampler_name is an empty string (use NULL for params->sampler)");
    o.sampler = bounded_string(p.sampler_name, 256, "sampler_name");
  }
  if (p.karras != 0 && p.karras != 1) bad("params->karras = " + std::to_string(p.karras) + " must be 0 or 1");
  o.karras = p.karras == 1;
  if (p.scheduler_config_file_json) {
    o.scheduler_config = bounded_string(p.scheduler_config_file_json, size_t(1) << 20, "scheduler_config_file_json");
    if (o.scheduler_config.empty())
      bad("params->scheduler_config_file_json is an empty string (use NULL for the model's config)");
  }
  // Image-to-image / inpainting: views of the caller's memory; prepare() checks them (errors name the fields).
  const bool has_image = p.init_image || p.init_image_batch || p.init_image_height || p.init_image_width ||
                         p.init_image_channels;
  if (has_image) {
    if (!p.init_image) bad("params->init_image is NULL but init_image_batch/height/width/channels are set");
    o.init_image = {p.init_image, p.init_image_batch, p.init_image_height, p.init_image_width, p.init_image_channels};
  }
  if (p.mask || p.mask_batch || p.mask_height || p.mask_width) {
    if (!p.mask) bad("params->mask is NULL but mask_batch/height/width are set");
    if (!has_image) bad("params->mask given without params->init_image: inpainting repaints an image");
    o.mask = {p.mask, p.mask_batch, p.mask_height, p.mask_width};
  }
  if (p.strength != 0.0) {
    if (!(p.strength > 0.0 && p.strength <= 1.0))
      bad("params->strength = " + std::to_string(p.strength) + " must be in (0, 1] (0: the pipelines' default)");
    if (!has_image) bad("params->strength given without params->init_image");
    o.strength = p.strength;
  }
  return o;
}

// The class a model's scheduler config runs, as the C enum.
diffrt_sampler to_c_sampler(const std::string& short_name) {
  for (size_t i = 0; i < std::size(kSamplerNames); ++i)
    if (short_name == kSamplerNames[i]) return diffrt_sampler(i + 1);
  if (short_name.rfind("dpm", 0) == 0)  // other DPM-Solver variants: the class
    return short_name.find("-sde") != std::string::npos ? DIFFRT_SAMPLER_DPMPP_2M_SDE : DIFFRT_SAMPLER_DPMPP_2M;
  return DIFFRT_SAMPLER_DDPM;
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
  info->vae_scale_factor = 1;
  info->default_sampler = DIFFRT_SAMPLER_DDPM;
}

diffrt_status diffrt_model_get_info(const diffrt_model* model, diffrt_model_info* info) {
  return guarded([&] {
    const diffrt::ModelInfo& mi = model_of(model).info();
    diffrt_model_info d;
    diffrt_model_info_init(&d);
    const size_t used = info ? used_bytes(info->struct_size, kModelInfoVersions, "info") : 0;
    diffrt_model_info r = read_versioned(info, d, kModelInfoVersions, "info");
    r.in_channels = mi.in_channels;
    r.out_channels = mi.out_channels;
    r.sample_size = mi.sample_size;
    r.downsample_factor = mi.downsample_factor;
    r.num_classes = mi.num_classes;
    r.null_class = mi.null_class;
    r.num_train_timesteps = mi.num_train_timesteps;
    r.context_dim = mi.context_dim;
    r.has_vae = mi.has_vae ? 1 : 0;
    r.vae_scale_factor = mi.vae_scale_factor;
    r.vae_scaling_factor = mi.vae_scaling_factor;
    r.image_channels = mi.image_channels;
    r.image_size = mi.image_size;
    r.default_sampler = to_c_sampler(mi.default_sampler);
    r.has_text_encoder = mi.has_text_encoder ? 1 : 0;
    r.has_vae_encoder = mi.has_vae_encoder ? 1 : 0;
    r.encoder_image_channels = mi.encoder_image_channels;
    std::memcpy(static_cast<void*>(info), &r, used);  // only the fields the caller's version has
  });
}

void diffrt_session_options_init(diffrt_session_options* options) {
  if (!options) return;
  std::memset(static_cast<void*>(options), 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->device = DIFFRT_DEVICE_CPU;
  options->device_ordinal = 0;
  options->deterministic = 0;
}

diffrt_status diffrt_device_count(diffrt_device device, int* count) {
  if (count) *count = 0;
  std::string why;
  const diffrt_status st = guarded([&] {
    if (!count) bad("count is NULL");
    switch (enum_int(device)) {
      case DIFFRT_DEVICE_CPU: *count = diffrt::device_count(diffrt::Device::Cpu); break;
      case DIFFRT_DEVICE_CUDA: *count = diffrt::device_count(diffrt::Device::Cuda, &why); break;
      default: bad("device = " + std::to_string(enum_int(device)) + " is not a diffrt_device");
    }
  });
  if (st == DIFFRT_OK && !why.empty()) set_message(why.c_str());  // OK with 0 devices: say why
  return st;
}

diffrt_status diffrt_session_create(diffrt_model* model, const diffrt_session_options* options,
                                    diffrt_session** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!out) bad("out is NULL");
    model_of(model);
    diffrt_session_options d;
    diffrt_session_options_init(&d);
    const diffrt_session_options o = options ? read_versioned(options, d, kSessionOptionsVersions, "options") : d;
    diffrt::SessionOptions so;
    switch (enum_int(o.device)) {
      case DIFFRT_DEVICE_CPU: so.device = diffrt::Device::Cpu; break;
      case DIFFRT_DEVICE_CUDA: so.device = diffrt::Device::Cuda; break;
      default: bad("options->device = " + std::to_string(enum_int(o.device)) + " is not a diffrt_device");
    }
    so.threads = o.threads;
    so.memory_limit_bytes = o.memory_limit_bytes;
    so.device_ordinal = o.device_ordinal;
    if (o.deterministic != 0 && o.deterministic != 1)
      bad("options->deterministic = " + std::to_string(o.deterministic) + " must be 0 or 1");
    so.deterministic = o.deterministic != 0;
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
  params->output = DIFFRT_OUTPUT_IMAGES;
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

diffrt_status diffrt_sample_memory_estimate(diffrt_session* session, const diffrt_sample_params* params,
                                            uint64_t* out_bytes) {
  if (out_bytes) *out_bytes = 0;
  return guarded([&] {
    diffrt::Session& s = session_of(session);
    if (!out_bytes) bad("out_bytes is NULL");
    *out_bytes = s.memory_estimate(to_options(params));
  });
}

diffrt_status diffrt_sample(diffrt_session* session, const diffrt_sample_params* params, float* out_images,
                            size_t out_capacity_floats, size_t* out_written) {
  if (out_written) *out_written = 0;
  return guarded([&] {
    diffrt::Session& s = session_of(session);
    const diffrt::SampleOptions o = to_options(params);
    const size_t need = s.output_shape(o).numel();  // validates the request
    if (!out_images || out_capacity_floats < need) {
      if (out_written) *out_written = need;
      // Memory first: a request that cannot fit is out of memory whatever the buffer. sample_into checks the
      // memory before the buffer, so with no buffer it throws either that or the argument error replaced here.
      try {
        s.sample_into(o, nullptr, 0);
      } catch (const diffrt::Error& e) {
        if (e.code() != ErrorCode::InvalidArgument) throw;
      }
      bad(std::string(out_images ? "out_capacity_floats = " + std::to_string(out_capacity_floats) + " is too small"
                                 : "out_images is NULL") +
          ": the output needs " + std::to_string(need) + " floats");
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
    if (s.model().info().context_dim > 0)
      diffrt::fail(ErrorCode::Unsupported,
                   "eval: this model is text-conditioned and diffrt_eval takes no encoder hidden states; sample through "
                   "diffrt_sample, or use the C++ API's Session::eval with encoder_hidden_states (`diffrt eval "
                   "--encoder-hidden-states`)");
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
