// Internals of the embedding API (runtime/api), shared by its .cpp files and never installed:
//  * Model::Impl: the model file, its info, and the backend weights made lazily and shared by the
//    model's sessions (fp32 host weights; one CudaWeights per CUDA device), under one mutex.
//  * Prepared: a validated sample request (prepare(), request.cpp), the same checks as `diffrt sample`.
//  * Memory estimates (request.cpp): what a request needs on the host (CPU backend) or on a device (CUDA
//    backend, from cuda_memory_report) beyond the shared weights.
//  * Backend: what a Session delegates to (backend_cpu.cpp, backend_cuda.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/diffrt.hpp"
#include "model/model_file.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"

namespace diffrt {

class CpuWeights;
class CudaWeights;  // runtime/cuda/cuda_executor.h; only complete in builds with the CUDA backend

struct Model::Impl {
  ModelFile file;
  ModelInfo info;
  std::mutex mu;  // guards the lazily made weights below
  std::shared_ptr<const CpuWeights> cpu;
  std::map<int, std::shared_ptr<const CudaWeights>> cuda;  // by device ordinal
};

struct ModelAccess {
  static Model::Impl& impl(const Model& m) { return *m.impl_; }
};

namespace api {

constexpr size_t kMaxCachedExecutors = 4;
constexpr int kMaxContextLen = 65536;

[[noreturn]] void bad(const std::string& msg);
std::string bytes_str(uint64_t bytes);  // "123456789 bytes (118 MiB)"

// fp32 host weights of the model, made by the first caller (thread-safe; bad_alloc -> OutOfMemory).
std::shared_ptr<const CpuWeights> cpu_weights(const Model& m);

// A validated request.
struct Prepared {
  SchedulerConfig sched;
  SampleRequest req;           // height/width: the UNet's sample (latents of a latent model)
  int model_batch = 0;         // 2 * batch with guidance
  bool text = false;           // text-conditioned UNet (req.text_cfg)
  int context_len = 0;         // tokens per row of encoder_hidden_states (text models)
  bool decode = false;         // the VAE decodes the final latents
  ImageShape out;              // what the caller receives
  uint64_t estimated_bytes = 0;  // set by the session before running (messages)
};

// Checks the options against the model (no limit, no allocation beyond the request's own size).
Prepared prepare(const Model& model, const SampleOptions& o);

// encoder_hidden_states of every model-batch row, [model_batch, len, dim]: [negative x B; positive x B]
// with guidance, else [positive x B] (one embedding row broadcast to the batch when batch 1). Checks
// every value is finite.
std::vector<float> text_context(const Prepared& p, const SampleOptions& o);

// Working memory of a request beyond the shared weights, in bytes (saturating at UINT64_MAX): host fp32
// buffers of the CPU backend, or device buffers of the CUDA backend (cuda_memory_report's peak minus the
// weights, plus the sampler's own tables: torch noise, precomputed time embeddings, thresholding scratch).
uint64_t estimate_cpu_bytes(const ModelFile& mf, const Prepared& p);
uint64_t estimate_cuda_bytes(const ModelFile& mf, const Prepared& p);

// What a Session delegates to. One call at a time (the Session's busy flag guarantees it).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;  // "CPU", "CUDA device 0"
  virtual uint64_t estimate(const Prepared& p) const = 0;
  // Throws Error(OutOfMemory) when `bytes` cannot fit in the device's free memory now (CUDA); no-op on CPU.
  virtual void preflight(uint64_t bytes) = 0;
  // The loop (and the VAE decode when p.decode): final values NHWC fp32 -- pixels in about [-1, 1], or
  // latents. `context` is text_context()'s result for text models, else empty.
  virtual std::vector<float> run(const Prepared& p, const std::vector<float>& context, const ProgressFn& progress) = 0;
  // One forward of the UNet: x NHWC [n, h, w, Cin], t [n], labels [n] or null -> y NHWC [n, h, w, Cout].
  virtual void eval(const float* x, int n, int h, int w, const float* t, const int32_t* labels, float* y) = 0;
  virtual void release_cache() = 0;
  virtual size_t cached_executors() const = 0;
};

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const Model> model, const SessionOptions& o);
// Error(Unsupported) saying why when the build has no CUDA backend or the device is not usable.
std::unique_ptr<Backend> make_cuda_backend(std::shared_ptr<const Model> model, const SessionOptions& o);
// Number of CUDA devices (0 and *why set when none can be used or the build has no CUDA backend).
int cuda_device_count(std::string* why);

}  // namespace api
}  // namespace diffrt
