// diffrt C++ API: the object model behind the C API (diffrt.h), usable directly from C++.
//
//   auto model = diffrt::Model::load("cifar.drt");            // parse + validate, once
//   diffrt::Session session(model, {});                         // one per thread (CPU by default)
//   diffrt::SampleOptions o; o.steps = 50; o.sampler = diffrt::Sampler::Ddim; o.seed = 7;
//   std::vector<float> images = session.sample(o);               // NHWC [0, 1]
//
//   // Stable Diffusion on the GPU, from a prompt (a file converted with its text encoder), or from CLIP
//   // embeddings [1, 77, 768] (pos) and the empty prompt's (neg):
//   diffrt::Session gpu(sd_model, {diffrt::Device::Cuda});
//   o.prompts = {"a photo of an astronaut"};                     // or:
//   o.prompt_embeds = {pos.data(), 1, 77, 768}; o.negative_prompt_embeds = {neg.data(), 1, 77, 768};
//   o.guidance_scale = 7.5f; o.height = o.width = 512;
//   std::vector<float> sd_images = gpu.sample(o);                // [1, 512, 512, 3] NHWC [0, 1]
//
//   // Image-to-image / inpainting: the image NHWC in [0, 1] (its size is the output's), an optional mask:
//   o.init_image = {photo.data(), 1, 512, 512, 3}; o.strength = 0.6;   // o.mask = {m.data(), 1, 512, 512};
//   std::vector<float> edited = gpu.sample(o);
//
// This is the one way to run a model: the diffrt command, its benchmarks (api/diffrt_bench.hpp) and the serving
// backend are front ends on it. Errors are thrown as diffrt::Error (base/error.h) with an ErrorCode and a message.
// Thread safety: a Model is immutable and shared (std::shared_ptr<const Model>) by any number of
// sessions on any threads; its backend weights (fp32 host copy; one upload per CUDA device) are made
// once, by the first session that needs them, under a lock, and serve every phase of a request (text
// encoder, denoising loop, VAE decode). A Session serves one call at a time; a
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
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace diffrt {

struct ModelAccess;  // the implementation's access to a Model's internals (api/api_internal.h)
class Session;

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
  std::string default_sampler; // the short name of the model's scheduler ("ddpm" for pixel models without a
                               // scheduler class; SD 1.5: "pndm"); see sampler_display_name
  std::string scheduler;       // the model's scheduler and the options that shape sampling (one line)
  int context_dim = 0;         // text-conditioned UNets: prompt embedding channels; 0: none
  bool has_vae = false;        // the file holds a VAE decoder (sample() decodes the latents)
  bool has_vae_encoder = false;  // the file holds the VAE's encoder too: Session::encode works (image-to-image)
  int encoder_image_channels = 0;  // channels of the images Session::encode takes (3 for SD); 0 without an encoder
  int vae_scale_factor = 1;    // pixels per latent
  float vae_scaling_factor = 0.0f;  // latents are divided by it before decoding (0.18215 SD 1.x)
  int image_channels = 0;      // channels of sample()'s images
  int image_size = 0;          // default image side in pixels: sample_size * vae_scale_factor
  std::string family;          // the model file's family ("unet2d", "stable-diffusion", ...)
  bool has_text_encoder = false;    // prompts as text work (SampleOptions::prompts, Session::encode_prompts)
  float default_guidance_scale = 1.0f;  // the diffusers pipeline's default: 7.5 text-conditioned, else 1
  std::string scheduler_config;     // the model's diffusers scheduler config (JSON object text)
};

// Shapes and memory of one denoiser call at a given size (Model::plan_summary), for `diffrt info --graph`.
struct PlanSummary {
  struct Node {
    std::string op, name, shape;  // shape: "[N, H, W, C]"
  };
  uint64_t arena_bytes_fp32 = 0;   // the planned activation arena (fp32 elements x 4)
  uint64_t naive_bytes_fp32 = 0;   // every activation without reuse
  std::vector<Node> nodes;
};

class Model {
 public:
  // Reads and validates the file. Backend weights are made by the first session that needs them.
  static std::shared_ptr<const Model> load(const std::string& path);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const;
  // Shape inference of the denoiser at batch n, h x w (a multiple of the downsample factor).
  PlanSummary plan_summary(int n, int h, int w) const;
  // Backend weight copies made so far (fp32 host copy + one per CUDA device): each happens once per model,
  // shared by every session and every phase.
  int weight_uploads() const;

 private:
  friend class Session;
  friend struct ModelAccess;
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

enum class Device { Cpu, Cuda };
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

// Non-owning NHWC float32 images [batch, height, width, channels] in [0, 1]; read during the call only.
struct ImageView {
  const float* data = nullptr;
  int batch = 0, height = 0, width = 0, channels = 0;
  bool empty() const { return !data && !batch && !height && !width && !channels; }
};

// Non-owning inpainting masks [batch, height, width] float32 in [0, 1] (NHW, or NHW1 with its trailing 1 dropped);
// white (>= 0.5) = repaint. Read during the call only.
struct MaskView {
  const float* data = nullptr;
  int batch = 0, height = 0, width = 0;
  bool empty() const { return !data && !batch && !height && !width; }
};

// Called after each completed step; return false to cancel (sample throws Error(Cancelled)).
using ProgressCallback = std::function<bool(int step, int total)>;

struct SampleOptions {
  // Scheduler selection, as diffusers users do it. The base config is `scheduler_config` (a whole diffusers
  // scheduler_config.json, taken as `<_class_name>.from_config(it)`: keys it lacks get that class's defaults)
  // or else the model's own. `sampler` (a diffusers class name or a short name: ddpm ddim pndm dpmpp-2m
  // dpmpp-2m-sde euler euler-a heun unipc lcm) makes it `NAME.from_config(base)`: the betas, spacing and offset
  // are kept. `karras` adds use_karras_sigmas=True (dpmpp-2m, dpmpp-2m-sde, euler, heun, unipc);
  // `scheduler_overrides` (a JSON object) are further from_config keyword arguments, applied last.
  std::string sampler;                // "": the base config's class (ModelInfo::default_sampler for the model's)
  bool karras = false;
  int steps = 0;                      // 0: the pipeline default (DDPM 1000, LCM 4, others 50)
  float eta = 0.0f;                   // DDIM only, [0, 1]
  uint64_t seed = 0;
  Rng rng = Rng::Philox;
  uint32_t first_sample_index = 0;    // Philox: global index of image 0
  int batch = 1;                      // [1, kMaxBatch]; images per prompt when `prompts` is given
  int height = 0, width = 0;          // 0: the model's sample_size
  std::vector<int32_t> class_labels;  // empty, one (broadcast) or `batch` labels
  float guidance_scale = 1.0f;        // [0, 1000]; > 1 enables classifier-free guidance
  std::string scheduler_config;       // "" or a whole diffusers scheduler config (JSON object) replacing the model's
  std::string scheduler_overrides;    // "" or a JSON object of from_config keyword arguments (applied last)
  ProgressCallback progress;          // may be empty
  // Text-conditioned models: prompt embeddings (batch 1, used for every image, or `batch`) and, for
  // guidance_scale > 1, negative prompt embeddings of the same shape. height/width are in pixels.
  TextEmbeddings prompt_embeds, negative_prompt_embeds;
  // Or prompts as text (models converted with their text encoder), as StableDiffusionPipeline(prompt=...):
  // prompts.size() * batch images, each prompt's images adjacent (batch = num_images_per_prompt);
  // negative_prompts: none ("" for every prompt, as diffusers), one for all prompts, or one per prompt (used
  // with guidance only). Not together with prompt_embeds.
  std::vector<std::string> prompts, negative_prompts;
  Output output = Output::Images;
  // Image-to-image and inpainting (StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline; pixel models:
  // SDEdit, the same recipe without a VAE). `init_image` is the image after VaeImageProcessor's resize and before
  // its 2x - 1: NHWC in [0, 1] at the output size (height/width default to its size; given, they must match), with
  // encoder_image_channels channels (latent models, which need a VAE encoder) or the UNet's (pixel models).
  // batch 1 (used for every image), or a divisor of the images the request makes (tiled [i0, i1, i0, i1, ...] as
  // diffusers does; one per image is the usual case). The image is VAE-encoded with the request's generator
  // (posterior sample first, then the noise, as diffusers draws them) and noised to the first timestep of the
  // strength-truncated schedule.
  ImageView init_image;
  // Inpainting (needs init_image): [batch, height, width] at the image's size, batch as for init_image; binarised at
  // 0.5 and nearest-downsampled to the latents (mask_processor, F.interpolate). A 9-channel UNet (in_channels = 4
  // latent + 1 mask + 4 masked-image latents) gets the mask and the masked image's latents as extra inputs and needs
  // a mask; a 4-channel UNet (or a pixel model) re-imposes the noised known region after every step (the legacy path).
  MaskView mask;
  // In (0, 1]: the fraction of the schedule that runs (int(steps * strength) steps). Unset: the pipelines' defaults,
  // 0.8 for image-to-image, 1.0 with a mask. Only with init_image.
  std::optional<double> strength;
};

// Session::encode: what StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline do with a preprocessed
// image: vae.encode(x).latent_dist, then sample(generator) (or mode()), then * vae.config.scaling_factor.
struct EncodeOptions {
  bool sample = true;               // true: latent_dist.sample(generator), what both pipelines do; false: mode() (the mean)
  uint64_t seed = 0;
  Rng rng = Rng::Philox;            // Torch: the noise is torch.randn([n, C, h, w], generator=Generator().manual_seed(seed)),
                                    // as diffusers draws it; Philox: per image (seed, first_sample_index + i)
  uint32_t first_sample_index = 0;  // Philox: global index of image 0
  bool scaled = true;               // multiply by the VAE's scaling_factor (the pipelines' init_latents); false: the raw
                                    // posterior (latent_dist.sample() itself)
};

// What a request resolves to (Session::describe): the settings that will run and the output shape.
struct SampleDescription {
  std::string sampler;            // the short name of the sampler that runs ("ddim", "dpmpp-2m", ...)
  std::string scheduler;          // its class and options in one line (describe_scheduler)
  int steps = 0;
  int images = 0;                 // prompts.size() * batch with text prompts, else batch
  float guidance_scale = 1.0f;
  std::string scheduler_config;   // the effective diffusers scheduler config (JSON object text)
  double strength = 0.0;          // image-to-image / inpainting: the strength that runs (defaults resolved); else 0
  bool inpainting = false;        // a mask is given
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

  // The settings sample(o) will run with (validates o; runs nothing).
  SampleDescription describe(const SampleOptions& o) const;

  // One forward pass; sample [n, Cin, h, w] NCHW, timesteps [n], labels [n] or null; text-conditioned models
  // take encoder_hidden_states [n, len, context_dim] (`context`, e.g. CLIP's last_hidden_state) and no labels.
  // Returns [n, Cout, h, w] NCHW.
  std::vector<float> eval(const float* sample, int n, int h, int w, const float* timesteps,
                          const int32_t* class_labels, const TextEmbeddings& context = {});
  // As eval(), writing into caller memory of at least eval_output_size(n, h, w) floats.
  void eval_into(const float* sample, int n, int h, int w, const float* timesteps,
                 const int32_t* class_labels, float* out, size_t capacity_floats, const TextEmbeddings& context = {});
  size_t eval_output_size(int n, int h, int w) const;  // n * Cout * h * w, validated

  // What StableDiffusionPipeline does after its loop: latents [n, C, h, w] NCHW (not yet divided by the VAE's
  // scaling factor) -> VAE decoder -> (x/2 + 0.5).clamp(0, 1): images [n, f*h, f*w, image_channels] NHWC.
  std::vector<float> decode(const float* latents, int n, int h, int w);

  // The VAE encoder (files converted with it: ModelInfo::has_vae_encoder): images [n, h, w, encoder_image_channels]
  // NHWC float32 in [-1, 1] -- VaeImageProcessor.preprocess's output (2x - 1 of [0, 1] images), transposed to NHWC --
  // -> latents [n, C, h', w'] NCHW, h' = h / vae_scale_factor (each downsampling floors odd sizes, as diffusers).
  // h and w in [vae_scale_factor, 8192]. Every value is checked (finite, inside [-1, 1]) before anything runs.
  std::vector<float> encode(const float* images, int n, int h, int w, const EncodeOptions& o = {});
  // The shape encode(images, n, h, w) returns (NCHW latents; validates the sizes).
  ImageShape encode_output_shape(int n, int h, int w) const;
  // The posterior's parameters [n, 2C, h', w'] NCHW (latent_dist.parameters = quant_conv(encoder(x)): the mean,
  // then the raw logvar before DiagonalGaussianDistribution's clamp), with encode()'s checks.
  std::vector<float> encode_moments(const float* images, int n, int h, int w);

  // Prompts -> the text encoder's last_hidden_state [prompts.size(), max_length, hidden] (row-major), as
  // StableDiffusionPipeline.encode_prompt computes prompt_embeds; *len and *dim receive the shape.
  std::vector<float> encode_prompts(const std::vector<std::string>& prompts, int* len, int* dim);
  // The token ids of each prompt (input_ids: bos, ids, eos, padded to max_length), [prompts.size(), max_length].
  std::vector<int32_t> tokenize(const std::vector<std::string>& prompts, int* len) const;

  void release_cache();  // frees the per-shape executors and arenas (rebuilt on demand)
  size_t cached_executors() const;

  // True while a call is running on this session (best effort: a snapshot).
  bool busy() const;

  struct Impl;  // opaque (api/api_internal.h)

 private:
  friend struct SessionAccess;  // api/diffrt_bench.hpp's hooks run on the session's backend
  std::unique_ptr<Impl> impl_;
};

}  // namespace diffrt
