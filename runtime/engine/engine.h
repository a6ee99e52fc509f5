// The engine: what every front end runs a model through (the API's Session wraps it; docs/architecture.md).
//
//  * LoadedModel: a model file plus the backend weights made on demand and shared by every session and every
//    phase of a request (text encoder, denoising loop, VAE): one fp32 host copy, one upload per CUDA device.
//  * Job: a validated sampling request (the API builds it from its options: api/request.cpp).
//  * Backend: one session's execution state on one device (CPU executors and their arenas, or a CUDA context,
//    stream, handles and executors); it runs jobs, single forward passes, VAE decodes and encodes, the text encoder
//    and the benchmark/profiling workloads, one call at a time.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "runtime/bench_workload.h"
#include "runtime/cpu_executor.h"
#include "runtime/profile_trace.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"
#include "runtime/text_encoder.h"
#include "runtime/vae_encode.h"

namespace diffrt {

class CudaWeights;  // runtime/cuda/cuda_executor.h; complete only in builds with the CUDA backend

namespace engine {

enum class DeviceKind { Cpu, Cuda };

class LoadedModel {
 public:
  // Reads and validates the file (host memory failures become Error(OutOfMemory) naming the file).
  static std::shared_ptr<LoadedModel> load(const std::string& path);
  explicit LoadedModel(ModelFile file);
  ~LoadedModel();
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  const ModelFile& file() const { return file_; }

  // fp32 host weights of every graph, made by the first caller (thread-safe).
  std::shared_ptr<const CpuWeights> cpu_weights() const;
  // The weights on CUDA device `device`, uploaded by the first caller on that device (thread-safe; concurrent
  // callers wait for the one upload). Error(Unsupported) in builds without the CUDA backend.
  std::shared_ptr<const CudaWeights> cuda_weights(int device) const;
  // Weight uploads made so far: host widenings + device uploads (tests check "once per device").
  int weight_uploads() const;

 private:
  ModelFile file_;
  mutable std::mutex mu_;
  mutable std::shared_ptr<const CpuWeights> cpu_;
  mutable std::map<int, std::shared_ptr<const CudaWeights>> cuda_;
  mutable int uploads_ = 0;
};

// The image of an image-to-image or inpainting job (api/request.cpp validated it; the backends build the sampler's
// inputs from it with build_image_inputs, runtime/engine/image_inputs.h).
struct JobImage {
  std::vector<float> pixels;  // [n, H, W, c] NHWC in [-1, 1] (2x - 1 of the caller's [0, 1] image)
  int n = 0, h = 0, w = 0, c = 0;
  std::vector<float> mask;    // [m, H, W] binarised 0/1 (1 = repaint); empty: no mask
  int mask_n = 0;
  bool latent = false;        // VAE-encode the images (latent models); false: the pixels are x0 (SDEdit)
  bool encode_image = false;  // latent: the init image is encoded (img2img; inpainting: 4-channel UNet or strength < 1)
  bool present() const { return !pixels.empty(); }
  // Rows of the masked image (broadcast of n images and m masks, as [n,3,H,W] * [m,1,H,W]).
  int masked_rows() const { return mask.empty() ? 0 : (n > mask_n ? n : mask_n); }
};

// Output of a job: images NHWC in about [-1, 1] (pixel models, or VAE-decoded latents), or final latents NHWC.
struct Job {
  SchedulerConfig sched;
  SampleRequest req;           // height/width: the denoiser's sample (latents of a latent model)
  int model_batch = 0;         // rows of each denoiser call (2 * batch with guidance)
  bool text = false;           // text-conditioned denoiser (req.text_cfg)
  int context_len = 0;         // tokens per row of encoder_hidden_states
  std::vector<float> context;  // encoder_hidden_states of every model row [model_batch, len, dim] (text models)
  int text_rows = 0;           // rows the text encoder will run on (prompts as text: prompts x 2 with guidance), else 0
  bool decode = false;         // the VAE decodes the final latents
  JobImage image;              // image-to-image / inpainting input (req.img2img), else empty
  int out_batch = 0, out_h = 0, out_w = 0, out_c = 0;  // what run() returns (NHWC)
  uint64_t estimated_bytes = 0;
};

// One forward pass of the denoiser: x NHWC [n, h, w, Cin], t [n], labels [n] or null, context [n, len, dim] or
// null -> y NHWC [n, h, w, Cout].
struct EvalJob {
  const float* x = nullptr;
  const float* t = nullptr;
  const int32_t* labels = nullptr;
  const float* context = nullptr;
  int n = 0, h = 0, w = 0, context_len = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind device() const = 0;
  virtual std::string name() const = 0;  // "the CPU (host memory)", "CUDA device 0"
  // Working memory of a job beyond the shared weights (bytes; saturating).
  virtual uint64_t estimate(const Job& job) const = 0;
  // Throws Error(OutOfMemory) when `bytes` cannot fit now (free device memory; the machine's RAM on the CPU).
  virtual void preflight(uint64_t bytes) = 0;
  // The denoising loop, then the VAE decode when job.decode: NHWC fp32 (see Job).
  virtual std::vector<float> run(const Job& job, const ProgressFn& progress) = 0;
  virtual void eval(const EvalJob& e, float* y) = 0;
  // VAE decode of latents NHWC [n, h, w, C] (not yet divided by the scaling factor) -> NHWC in about [-1, 1].
  virtual std::vector<float> decode(const std::vector<float>& latents, int n, int h, int w) = 0;
  // The VAE encoder (runtime/vae_encode.h) on images NHWC [n, h, w, Cin] in [-1, 1] -> the posterior's moments
  // NHWC [n, h', w', 2C] (mean, raw logvar), checked finite.
  virtual EncodedLatents encode(const std::vector<float>& images, int n, int h, int w) = 0;
  // The encoder and the posterior: latents NHWC [n, h', w', C] = scaling_factor * (sample or mean) (o.scaled), the
  // noise from the request's generator (o). CUDA: the posterior is one fused kernel on the device moments.
  virtual EncodedLatents encode_latents(const std::vector<float>& images, int n, int h, int w,
                                        const PosteriorOptions& o) = 0;
  // The text encoder on token ids [batch, len] -> last_hidden_state [batch, len, hidden].
  virtual TextEmbeds encode_text(const std::vector<int32_t>& ids, int batch, int len) = 0;
  // `diffrt bench` / `diffrt profile` workloads (runtime/bench_workload.h) on this backend.
  virtual BenchResults bench(const Workload& w, const BenchOptions& o) = 0;
  virtual ProfileRun profile(const Workload& w, int warmup, int repeats, bool vae, bool ceilings) = 0;
  virtual void release_cache() = 0;
  virtual size_t cached_executors() const = 0;
};

struct BackendOptions {
  DeviceKind device = DeviceKind::Cpu;
  int device_ordinal = 0;      // CUDA device
  bool deterministic = false;  // CUDA: heuristic conv algorithms (bit-identical across sessions)
};

std::unique_ptr<Backend> make_backend(std::shared_ptr<const LoadedModel> model, const BackendOptions& o);
// CUDA devices this build can use (0 and *why set when none, or when built without the CUDA backend).
int cuda_device_count(std::string* why);

// Working memory of a job on each backend, beyond the shared weights (bytes, saturating at UINT64_MAX): host fp32
// buffers of the CPU backend; device buffers of the CUDA backend (cuda_memory_report's peak minus the weights,
// plus the sampler's own tables). Both are upper bounds over the job's phases: the text encoder (job.text_rows),
// the denoising loop and the VAE decode, each graph in its own dtype (tests/memory_estimate_test.cpp).
uint64_t estimate_cpu_bytes(const ModelFile& mf, const Job& job);
uint64_t estimate_cuda_bytes(const ModelFile& mf, const Job& job);

std::string bytes_str(uint64_t bytes);  // "123456789 bytes (118 MiB)"

}  // namespace engine
}  // namespace diffrt
