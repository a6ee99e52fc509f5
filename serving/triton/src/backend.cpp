// libtriton_diffrt.so: the TRITONBACKEND entry points of a Triton Inference Server backend that samples
// images with diffrt. A front end on diffrt's public C API (diffrt.h), like the CLI:
//   * one diffrt_model per Triton model (TRITONBACKEND_ModelInitialize loads the .drt file once);
//   * one diffrt_session per model instance: KIND_CPU instances get CPU sessions, KIND_GPU instances
//     CUDA sessions on the instance's device. Sessions of one model share its weights (once per device),
//     as the C API does; Triton runs each instance's requests on that instance's own thread, which is
//     the "one call at a time per session" the C API asks for.
//   * requests are served one by one inside TRITONBACKEND_ModelInstanceExecute (max_batch_size 0: a
//     request's NUM_IMAGES is its batch); every failure becomes that request's error response and
//     never reaches another request or the server (no exception leaves this file).
// The request contract and the model parameters are in serving/triton/README.md.
#include <algorithm>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "diffrt.h"
#include "model_config.h"
#include "request_inputs.h"
#include "responder.h"
#include "sample_request.h"
#include "triton_api.h"
#include "triton_util.h"

namespace diffrt_triton {
namespace {

struct ModelState {
  ModelConfig cfg;
  diffrt_model* model = nullptr;
  diffrt_model_info info{};
  ~ModelState() { diffrt_model_free(model); }
};

struct InstanceState {
  ModelState* model = nullptr;
  std::string name;
  std::string device;  // "CPU", "GPU 0"
  diffrt_session* session = nullptr;
  ~InstanceState() {
    if (session && diffrt_session_free(session) != DIFFRT_OK)
      DIFFRT_TRITON_LOG(TRITONSERVER_LOG_ERROR, name + ": diffrt_session_free: " + diffrt_last_error());
  }
};

// Runs `f` (returning Error), turning any exception into an INTERNAL error: nothing may unwind into Triton.
template <class F>
TRITONSERVER_Error* guarded(const char* where, F&& f) {
  try {
    return f().release();
  } catch (const std::bad_alloc&) {
    return TRITONSERVER_ErrorNew(TRITONSERVER_ERROR_UNAVAILABLE, (std::string(where) + ": out of host memory").c_str());
  } catch (const std::exception& e) {
    return TRITONSERVER_ErrorNew(TRITONSERVER_ERROR_INTERNAL, (std::string(where) + ": " + e.what()).c_str());
  } catch (...) {
    return TRITONSERVER_ErrorNew(TRITONSERVER_ERROR_INTERNAL, (std::string(where) + ": unknown exception").c_str());
  }
}

Error model_initialize(TRITONBACKEND_Model* model) {
  const char* name = nullptr;
  uint64_t version = 0;
  TRITONBACKEND_ArtifactType artifact = TRITONBACKEND_ARTIFACT_FILESYSTEM;
  const char* location = nullptr;
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelName(model, &name));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelVersion(model, &version));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelRepository(model, &artifact, &location));
  if (artifact != TRITONBACKEND_ARTIFACT_FILESYSTEM || !location)
    return make_error(TRITONSERVER_ERROR_UNSUPPORTED, "diffrt backend: model artifacts must be on a file system");

  TRITONSERVER_Message* msg = nullptr;
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelConfig(model, 1, &msg));
  const char* json = nullptr;
  size_t json_size = 0;
  Error e(TRITONSERVER_MessageSerializeToJson(msg, &json, &json_size));
  std::string config_json = e ? "" : std::string(json, json_size);
  TRITONSERVER_ErrorDelete(TRITONSERVER_MessageDelete(msg));
  if (e) return e;

  auto state = std::make_unique<ModelState>();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const uint64_t host_memory = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
  DIFFRT_TRITON_TRY(parse_model_config(config_json, location, version, cores, host_memory, &state->cfg));
  if (state->cfg.name.empty()) state->cfg.name = name;

  if (diffrt_status st = diffrt_model_load(state->cfg.model_file.c_str(), &state->model))
    return diffrt_error(st, "model '" + std::string(name) + "': loading " + state->cfg.model_file);
  diffrt_model_info_init(&state->info);
  if (diffrt_status st = diffrt_model_get_info(state->model, &state->info))
    return diffrt_error(st, "model '" + std::string(name) + "'");
  if (state->info.context_dim > 0 && !state->info.has_vae)
    return make_error(TRITONSERVER_ERROR_UNSUPPORTED, "model '" + std::string(name) +
                                                          "': a text-conditioned model file without a VAE decoder "
                                                          "returns latents, not images; serve a file with its VAE");
  const diffrt_model_info& i = state->info;
  DIFFRT_TRITON_LOG(TRITONSERVER_LOG_INFO,
                    "diffrt model '" + std::string(name) + "' version " + std::to_string(version) + ": " +
                        state->cfg.model_file + " (image " + std::to_string(i.image_size) + "x" +
                        std::to_string(i.image_size) + "x" + std::to_string(i.image_channels) + ", classes " +
                        std::to_string(i.num_classes) + ", context_dim " + std::to_string(i.context_dim) +
                        (state->cfg.decoupled ? ", decoupled" : "") + ")");
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelSetState(model, state.get()));
  state.release();
  return nullptr;
}

Error instance_initialize(TRITONBACKEND_ModelInstance* instance) {
  const char* iname = nullptr;
  TRITONSERVER_InstanceGroupKind kind = TRITONSERVER_INSTANCEGROUPKIND_CPU;
  int32_t device_id = 0;
  TRITONBACKEND_Model* model = nullptr;
  void* vmodel = nullptr;
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceName(instance, &iname));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceKind(instance, &kind));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceDeviceId(instance, &device_id));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceModel(instance, &model));
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelState(model, &vmodel));
  auto* ms = static_cast<ModelState*>(vmodel);
  if (!ms) return internal_error("model state missing");

  auto state = std::make_unique<InstanceState>();
  state->model = ms;
  state->name = iname ? iname : "instance";
  diffrt_session_options o;
  diffrt_session_options_init(&o);
  o.memory_limit_bytes = ms->cfg.memory_limit_bytes;
  if (kind == TRITONSERVER_INSTANCEGROUPKIND_CPU) {
    o.device = DIFFRT_DEVICE_CPU;
    o.threads = ms->cfg.threads;
    o.memory_limit_bytes = ms->cfg.cpu_memory_limit_bytes;
    state->device = "CPU, " + std::to_string(o.threads) + " threads, memory limit " +
                    std::to_string(o.memory_limit_bytes >> 20) + " MiB";
  } else if (kind == TRITONSERVER_INSTANCEGROUPKIND_GPU) {
    o.device = DIFFRT_DEVICE_CUDA;
    o.device_ordinal = device_id;
    o.deterministic = ms->cfg.deterministic ? 1 : 0;
    state->device = "GPU " + std::to_string(device_id);
  } else {
    return make_error(TRITONSERVER_ERROR_UNSUPPORTED,
                      state->name + ": instance_group kind must be KIND_CPU or KIND_GPU for the diffrt backend");
  }
  if (diffrt_status st = diffrt_session_create(ms->model, &o, &state->session))
    return diffrt_error(st, state->name + ": creating a diffrt session on " + state->device);
  DIFFRT_TRITON_LOG(TRITONSERVER_LOG_INFO, "diffrt instance " + state->name + " on " + state->device);
  DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceSetState(instance, state.get()));
  state.release();
  return nullptr;
}

// The progress callback's context: streams progress and turns a client's cancellation into diffrt's.
struct Progress {
  Responder* responder;
  int cancelled_at = -1;  // step at which the client had gone, or -1
  int total = 0;          // the loop's step count, as diffrt reports it
  static int callback(int step, int total, void* user) {
    auto* p = static_cast<Progress*>(user);
    p->total = total;
    try {
      if (p->responder->cancelled()) {
        p->cancelled_at = step;
        return 1;
      }
      Error e = p->responder->send_progress(step, total);
      if (e) {  // the stream is gone: stop sampling for nobody
        DIFFRT_TRITON_LOG(TRITONSERVER_LOG_WARN, "progress response failed, cancelling: " + message_of(e.get()));
        p->cancelled_at = step;
        return 1;
      }
    } catch (...) {
      p->cancelled_at = step;
      return 1;
    }
    return 0;
  }
};

// Serves one request (its responses are sent here, success or not). Returns whether it succeeded.
bool serve(InstanceState& inst, TRITONBACKEND_Request* request, uint64_t* compute_start, uint64_t* compute_end) {
  ModelState& ms = *inst.model;
  RequestedOutputs outs;
  Error err = read_requested_outputs(request, &outs);
  Responder responder(request, ms.cfg.decoupled, outs);
  RequestInputs in;
  diffrt_sample_params params;
  ImageShape shape;
  if (!err) err = read_inputs(request, &in);
  if (!err) err = make_sample_params(ms.info, ms.cfg, in, &params, &shape);
  size_t floats = 0;
  if (!err) {
    if (diffrt_status st = diffrt_sample_output_size(inst.session, &params, &floats)) err = diffrt_error(st, "");
  }
  if (!err && floats != size_t(shape.n) * size_t(shape.h) * size_t(shape.w) * size_t(shape.c))
    err = internal_error("image size mismatch: diffrt writes " + std::to_string(floats) + " floats for " +
                         std::to_string(shape.n) + "x" + std::to_string(shape.h) + "x" + std::to_string(shape.w) +
                         "x" + std::to_string(shape.c));
  // Memory before allocating anything: with no output buffer diffrt_sample only checks the request's
  // estimated working memory (out of memory: the bytes needed) and otherwise refuses the missing buffer.
  if (!err) {
    diffrt_status st = diffrt_sample(inst.session, &params, nullptr, 0, nullptr);
    if (st != DIFFRT_E_INVALID_ARGUMENT) err = diffrt_error(st == DIFFRT_OK ? DIFFRT_E_INTERNAL : st, "");
  }
  std::vector<float> images;
  int total = 0;
  if (!err) {
    try {
      images.resize(floats);
    } catch (const std::bad_alloc&) {
      err = make_error(TRITONSERVER_ERROR_UNAVAILABLE,
                       "out of host memory for the output (" + std::to_string(floats * sizeof(float)) + " bytes)");
    }
  }
  if (!err && responder.cancelled())  // cancelled while it waited in the queue
    err = make_error(TRITONSERVER_ERROR_CANCELLED, "request cancelled by the client before sampling started");
  if (!err) {
    Progress progress{&responder};
    params.progress = &Progress::callback;
    params.user = &progress;
    *compute_start = now_ns();
    diffrt_status st = diffrt_sample(inst.session, &params, images.data(), images.size(), nullptr);
    *compute_end = now_ns();
    if (st == DIFFRT_E_CANCELLED && progress.cancelled_at >= 0) {
      err = make_error(TRITONSERVER_ERROR_CANCELLED,
                       "request cancelled by the client; sampling stopped after step " +
                           std::to_string(progress.cancelled_at) + " of " + std::to_string(progress.total));
      DIFFRT_TRITON_LOG(TRITONSERVER_LOG_INFO, inst.name + ": " + message_of(err.get()));
    } else if (st) {
      err = diffrt_error(st, "");
    }
    total = progress.total;
  }
  if (!err) err = responder.send_images(images, shape, total);
  if (err) {
    DIFFRT_TRITON_LOG(TRITONSERVER_LOG_VERBOSE, inst.name + ": request failed: " + message_of(err.get()));
    responder.send_error(err.get());
    return false;
  }
  return true;
}

}  // namespace
}  // namespace diffrt_triton

using namespace diffrt_triton;

extern "C" {

TRITONSERVER_Error* TRITONBACKEND_Initialize(TRITONBACKEND_Backend* backend) {
  return guarded("diffrt backend", [&]() -> Error {
    uint32_t major = 0, minor = 0;
    DIFFRT_TRITON_TRY(TRITONBACKEND_ApiVersion(&major, &minor));
    if (major != TRITONBACKEND_API_VERSION_MAJOR || minor < DIFFRT_TRITONBACKEND_MIN_MINOR)
      return make_error(TRITONSERVER_ERROR_UNSUPPORTED,
                        "diffrt backend: Triton's backend API is " + std::to_string(major) + "." +
                            std::to_string(minor) + "; this backend needs " +
                            std::to_string(TRITONBACKEND_API_VERSION_MAJOR) + ".x with x >= " +
                            std::to_string(DIFFRT_TRITONBACKEND_MIN_MINOR));
    int dm = 0, dn = 0, dp = 0;
    diffrt_version(&dm, &dn, &dp);
    if (dm != DIFFRT_VERSION_MAJOR || dn != DIFFRT_VERSION_MINOR)
      return make_error(TRITONSERVER_ERROR_UNSUPPORTED, std::string("diffrt backend: built against diffrt.h ") +
                                                            std::to_string(DIFFRT_VERSION_MAJOR) + "." +
                                                            std::to_string(DIFFRT_VERSION_MINOR) + ", library " +
                                                            diffrt_version_string());
    const char* name = nullptr;
    DIFFRT_TRITON_TRY(TRITONBACKEND_BackendName(backend, &name));
    DIFFRT_TRITON_LOG(TRITONSERVER_LOG_INFO, std::string("backend '") + (name ? name : "?") + "': diffrt " +
                                                 diffrt_version_string() + ", Triton backend API " +
                                                 std::to_string(major) + "." + std::to_string(minor));
    return nullptr;
  });
}

TRITONSERVER_Error* TRITONBACKEND_Finalize(TRITONBACKEND_Backend*) { return nullptr; }

TRITONSERVER_Error* TRITONBACKEND_ModelInitialize(TRITONBACKEND_Model* model) {
  return guarded("diffrt model initialize", [&] { return model_initialize(model); });
}

TRITONSERVER_Error* TRITONBACKEND_ModelFinalize(TRITONBACKEND_Model* model) {
  return guarded("diffrt model finalize", [&]() -> Error {
    void* state = nullptr;
    DIFFRT_TRITON_TRY(TRITONBACKEND_ModelState(model, &state));
    delete static_cast<ModelState*>(state);
    return nullptr;
  });
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceInitialize(TRITONBACKEND_ModelInstance* instance) {
  return guarded("diffrt instance initialize", [&] { return instance_initialize(instance); });
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceFinalize(TRITONBACKEND_ModelInstance* instance) {
  return guarded("diffrt instance finalize", [&]() -> Error {
    void* state = nullptr;
    DIFFRT_TRITON_TRY(TRITONBACKEND_ModelInstanceState(instance, &state));
    delete static_cast<InstanceState*>(state);
    return nullptr;
  });
}

TRITONSERVER_Error* TRITONBACKEND_ModelInstanceExecute(TRITONBACKEND_ModelInstance* instance,
                                                       TRITONBACKEND_Request** requests, const uint32_t request_count) {
  void* vstate = nullptr;
  TRITONSERVER_Error* e = TRITONBACKEND_ModelInstanceState(instance, &vstate);
  if (e || !vstate) {
    // Without our state no request can be answered by us; returning an error makes Triton answer and
    // release them all.
    if (e) return e;
    return TRITONSERVER_ErrorNew(TRITONSERVER_ERROR_INTERNAL, "diffrt instance state missing");
  }
  auto& inst = *static_cast<InstanceState*>(vstate);
  for (uint32_t r = 0; r < request_count; ++r) {
    TRITONBACKEND_Request* request = requests[r];
    const uint64_t exec_start = now_ns();
    uint64_t compute_start = exec_start, compute_end = exec_start;
    bool ok = false;
    try {
      ok = serve(inst, request, &compute_start, &compute_end);
    } catch (...) {
      // serve() answers every request itself; this only guards the unexpected.
      DIFFRT_TRITON_LOG(TRITONSERVER_LOG_ERROR, inst.name + ": unexpected exception while serving a request");
    }
    const uint64_t exec_end = now_ns();
    TRITONSERVER_ErrorDelete(TRITONBACKEND_ModelInstanceReportStatistics(instance, request, ok, exec_start,
                                                                         compute_start, compute_end, exec_end));
    TRITONSERVER_ErrorDelete(
        TRITONBACKEND_ModelInstanceReportBatchStatistics(instance, 1, exec_start, compute_start, compute_end, exec_end));
    if (TRITONSERVER_Error* re = TRITONBACKEND_RequestRelease(request, TRITONSERVER_REQUEST_RELEASE_ALL)) {
      DIFFRT_TRITON_LOG(TRITONSERVER_LOG_ERROR, inst.name + ": releasing a request: " + message_of(re));
      TRITONSERVER_ErrorDelete(re);
    }
  }
  return nullptr;
}

}  // extern "C"
