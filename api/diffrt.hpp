// diffrt C++ API: the object model behind the C API (diffrt.h), usable directly from C++.
//
//   auto model = diffrt::Model::load("cifar.drt");            // parse + validate, once
//   diffrt::Session session(model, {});                         // one per thread (CPU by default)
//   diffrt::SampleOptions o; o.steps = 50; o.sampler = diffrt::Sampler::Ddim; o.seed = 7;
//   std::vector<float> images = session.sample(o);               // NHWC [0, 1]
//
//   // Stable Diffusion on the GPU, from CLIP embeddings [1, 77, 768] (pos) and the empty prompt's (neg):
//   diffrt::Session gpu(sd_model, {diffrt::Device::Cuda});
//   o.prompt_embeds = {pos.data(), 1, 77, 768}; o.negative_prompt_embeds = {neg.data(), 1, 77, 768};
//   o.guidance_scale = 7.5f; o.height = o.width = 512;
//   std::vector<float> sd_images = gpu.sample(o);                // [1, 512, 512, 3] NHWC [0, 1]
//
// Errors are thrown as diffrt::Error (base/error.h) with an ErrorCode and a message.
// Thread safety: a Model is immutable and shared (std::shared_ptr<const Model>) by any number of
// sessions on any threads; its backend weights (fp32 host copy; one upload per CUDA device) are made
// once, by the first session that needs them, under a lock. A Session serves one call at a time; a
// call that overlaps another on the same session throws Error(InvalidArgument, "session is busy ...")
// instead of racing. Each session has its own executors (CPU) or its own CUDA stream, library
// handles, workspaces and arenas, so sessions run concurrently. A Session survives any failed call
// (bad request, out of memory on the host or the device, cancellation) and serves the next.
//
// The implementation keeps the runtime's internal types (ModelFile, executors, CUDA) out of this header.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"

namespace diffrt {

struct ModelAccess;  // the implementation's access to a Model's internals (api/api_internal.h)

// "0.2.0" and its parts (the project version the library was built with).
const char* version_string();
void version(int* major, int* minor, int* patch);

struct ModelInfo {
  int in_channels = 0, out_channels = 0;  // of the UNet (latent channels for a latent model)
  int sample_size = 0;         // the UNet's default sample side (latents); 0 when the config has none
  int downsample_factor = 1;   // the UNet's H and W must be multiples of it
  int num_classes = 0;         // 0: unconditional
  int null_class = -1;         // CFG's unconditional label; -1: none
  int num_train_timesteps = 0; // of the model's default scheduler config (0 if it is invalid)
  std::string default_sampler; // "ddpm" or "ddim" (DDPMScheduler configs and pixel models without a
                               // scheduler class: ddpm; DDIM, PNDM and other SD schedulers: ddim)
  int context_dim = 0;         // text-conditioned UNets: prompt embedding channels; 0: none
  bool has_vae = false;        // the file holds a VAE decoder (sample() decodes the latents)
  int vae_scale_factor = 1;    // pixels per latent
  float vae_scaling_factor = 0.0f;  // latents are divided by it before decoding (0.18215 SD 1.x)
  int image_channels = 0;      // channels of sample()'s images
  int image_size = 0;          // default image side in pixels: sample_size * vae_scale_factor
};

class Model {
 public:
  // Reads and validates the file. Backend weights are made by the first session that needs them.
  static std::shared_ptr<const Model> load(const std::string& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const;

 private:
  friend class Session;
  friend struct ModelAccess;
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

enum class Device { Cpu, Cuda };
enum class Sampler { Default, Ddpm, Ddim };  // Default: ModelInfo::default_sampler
enum class Rng { Philox, Torch };
enum class Output { Images, Latents };       // Latents: text-conditioned models, NCHW, unscaled

// Devices of a kind: 1 CPU; CUDA devices present (0 without a CUDA backend or device: *why says why).
int device_count(Device device, std::string* why = nullptr);

struct SessionOptions {
  Device device = Device::Cpu;       // Cuda: Error(Unsupported) saying why when unavailable
  int threads = 0;                   // CPU threads per call; 0: the OpenMP default
  uint64_t memory_limit_bytes = 0;   // 0: none; else requests estimated above it fail up front
                                     // (host bytes on CPU, device bytes on CUDA; weights not counted)
  int device_ordinal = 0;            // CUDA device index
  bool deterministic = false;        // CUDA: heuristic conv algorithms, bit-identical across sessions
  bool memory_preflight = true;      // false: skip comparing the estimate with the free device memory
                                     // (the host's RAM on CPU), e.g. to test the out-of-memory path
                                     // while running; the session limit still applies
};

// Non-owning [batch, len, dim] float32 row-major text embeddings; read during the call only.
struct TextEmbeddings {
  const float* data = nullptr;
  int batch = 0, len = 0, dim = 0;
  bool empty() const { return !data && !batch && !len && !dim; }
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
  // Text-conditioned models: prompt embeddings (batch 1, used for every image, or `batch`) and, for
  // guidance_scale > 1, negative prompt embeddings of the same shape. height/width are in pixels.
  TextEmbeddings prompt_embeds, negative_prompt_embeds;
  Output output = Output::Images;
};

constexpr int kMaxBatch = 4096;
constexpr float kMaxGuidance = 1000.0f;

struct ImageShape {
  int batch = 0, height = 0, width = 0, channels = 0;  // NHWC images, or NCHW when `latents`
  bool latents = false;
  size_t numel() const { return size_t(batch) * size_t(height) * size_t(width) * size_t(channels); }
};

class Session {
 public:
  Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const;

  Device device() const;

  // Validates the options against the model; returns the output shape. Does not run anything.
  ImageShape output_shape(const SampleOptions& o) const;
  // Estimated working memory (bytes, on the session's device) of sample(o); validates, checks no limit.
  uint64_t memory_estimate(const SampleOptions& o) const;
  // Runs the loop (and the VAE decode); returns NHWC float32 images in [0, 1] (or NCHW latents).
  // The memory checks (session limit, free device memory) come before the output is allocated.
  std::vector<float> sample(const SampleOptions& o);
  // As sample(), writing into caller memory of at least output_shape(o).numel() floats. Checks, in
  // order: the request, memory (limit, free device memory), the output capacity.
  void sample_into(const SampleOptions& o, float* out, size_t capacity_floats);

  // One forward pass; sample [n, Cin, h, w] NCHW, timesteps [n], labels [n] or null;
  // returns [n, Cout, h, w] NCHW.
  std::vector<float> eval(const float* sample, int n, int h, int w, const float* timesteps,
                          const int32_t* class_labels);
  // As eval(), writing into caller memory of at least eval_output_size(n, h, w) floats.
  void eval_into(const float* sample, int n, int h, int w, const float* timesteps,
                 const int32_t* class_labels, float* out, size_t capacity_floats);
  size_t eval_output_size(int n, int h, int w) const;  // n * Cout * h * w, validated

  void release_cache();  // frees the per-shape executors and arenas (rebuilt on demand)
  size_t cached_executors() const;

  // True while a call is running on this session (best effort: a snapshot).
  bool busy() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace diffrt
