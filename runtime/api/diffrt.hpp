// diffrt C++ API: the object model behind the C API (diffrt.h), usable directly from C++.
//
//   auto model = diffrt::Model::load("cifar.drt");            // parse + validate + weights, once
//   diffrt::Session session(model, {});                         // one per thread
//   diffrt::SampleOptions o; o.steps = 50; o.sampler = diffrt::Sampler::Ddim; o.seed = 7;
//   std::vector<float> images = session.sample(o);               // NHWC [0, 1]
//
// Errors are thrown as diffrt::Error (kernels/common/error.h) with an ErrorCode and a message.
// Thread safety: a Model is immutable and shared (std::shared_ptr<const Model>) by any number of
// sessions on any threads. A Session serves one call at a time; a call that overlaps another on
// the same session throws Error(InvalidArgument, "session is busy ...") instead of racing.
// A Session survives any failed call (bad request, out of memory, cancellation) and serves the next.
//
// The implementation keeps the runtime's internal types (ModelFile, executors) out of this header.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/common/error.h"

namespace diffrt {

// "0.1.0" and its parts (the project version diffrt_core was built with).
const char* version_string();
void version(int* major, int* minor, int* patch);

struct ModelInfo {
  int in_channels = 0, out_channels = 0;
  int sample_size = 0;         // 0 when the model config has none
  int downsample_factor = 1;   // H and W must be multiples of it
  int num_classes = 0;         // 0: unconditional
  int null_class = -1;         // CFG's unconditional label; -1: none
  int num_train_timesteps = 0; // of the model's default scheduler config (0 if it is invalid)
  std::string default_sampler; // "ddpm" or "ddim", from the scheduler config's _class_name
};

class Model {
 public:
  // Reads and validates the file and widens the weights for the CPU backend.
  static std::shared_ptr<const Model> load(const std::string& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const;

 private:
  friend class Session;
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

enum class Device { Cpu, Cuda };
enum class Sampler { Default, Ddpm, Ddim };  // Default: DDIM for a DDIMScheduler config, else DDPM
enum class Rng { Philox, Torch };

struct SessionOptions {
  Device device = Device::Cpu;       // Cuda: Error(Unsupported) until the CUDA backend lands
  int threads = 0;                   // CPU threads per call; 0: the OpenMP default
  uint64_t memory_limit_bytes = 0;   // 0: none; else requests estimated above it fail up front
};

// Called after each completed step; return false to cancel (sample throws Error(Cancelled)).
using ProgressCallback = std::function<bool(int step, int total)>;

struct SampleOptions {
  Sampler sampler = Sampler::Default;
  int steps = 0;                      // 0: the pipeline default (DDPM 1000, DDIM 50)
  float eta = 0.0f;                   // DDIM only, [0, 1]
  uint64_t seed = 0;
  Rng rng = Rng::Philox;
  uint32_t first_sample_index = 0;    // Philox: global index of image 0
  int batch = 1;                      // [1, kMaxBatch]
  int height = 0, width = 0;          // 0: the model's sample_size
  std::vector<int32_t> class_labels;  // empty, one (broadcast) or `batch` labels
  float guidance_scale = 1.0f;        // [0, 1000]; > 1 enables classifier-free guidance
  std::string scheduler_overrides;    // "" or a JSON object overriding scheduler config keys
  ProgressCallback progress;          // may be empty
};

constexpr int kMaxBatch = 4096;
constexpr float kMaxGuidance = 1000.0f;

struct ImageShape {
  int batch = 0, height = 0, width = 0, channels = 0;  // NHWC
  size_t numel() const { return size_t(batch) * size_t(height) * size_t(width) * size_t(channels); }
};

class Session {
 public:
  Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const;

  // Validates the options against the model; returns the output shape. Does not run anything.
  ImageShape output_shape(const SampleOptions& o) const;
  // Runs the loop; returns NHWC float32 images in [0, 1].
  std::vector<float> sample(const SampleOptions& o);
  // As sample(), writing into caller memory of at least output_shape(o).numel() floats.
  void sample_into(const SampleOptions& o, float* out, size_t capacity_floats);

  // One forward pass; sample [n, Cin, h, w] NCHW, timesteps [n], labels [n] or null;
  // returns [n, Cout, h, w] NCHW.
  std::vector<float> eval(const float* sample, int n, int h, int w, const float* timesteps,
                          const int32_t* class_labels);
  // As eval(), writing into caller memory of at least eval_output_size(n, h, w) floats.
  void eval_into(const float* sample, int n, int h, int w, const float* timesteps,
                 const int32_t* class_labels, float* out, size_t capacity_floats);
  size_t eval_output_size(int n, int h, int w) const;  // n * Cout * h * w, validated

  void release_cache();  // frees the per-shape executors (rebuilt on demand)
  size_t cached_executors() const;

  // True while a call is running on this session (best effort: a snapshot).
  bool busy() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace diffrt
