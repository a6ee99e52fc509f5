/* diffrt C API: load a converted model (.drt), open sessions on it (CPU or CUDA), sample images
 * (pixel-space UNets, or Stable-Diffusion-style text-conditioned latent models from prompt
 * embeddings, decoded by the file's VAE) or run one forward pass. Plain C99, stable ABI: opaque
 * handles, status codes, int-sized enums, size-prefixed structs.
 *
 * Errors
 *   Every function that can fail returns a diffrt_status. DIFFRT_OK is 0; the other values equal
 *   the C++ library's diffrt::ErrorCode. diffrt_last_error() gives the message of the most recent
 *   status-returning call made on the calling thread ("" after a call that returned DIFFRT_OK).
 *   No C++ exception ever crosses this boundary, and the library never exits or aborts.
 *   Argument checks (NULL pointers, struct_size, enum values, ranges, output capacity) return
 *   DIFFRT_E_INVALID_ARGUMENT with a message naming the argument.
 *
 * Thread safety
 *   - A diffrt_model is immutable once loaded: any number of sessions, on any threads, share it
 *     read-only. The model is reference-counted by its sessions, so diffrt_model_free may be
 *     called while sessions still use it; the memory goes when the last of them is freed.
 *     Backend weights are made once per model and shared by all its sessions: fp32 host weights
 *     when its first CPU session is created, one upload per CUDA device when its first CUDA
 *     session on that device is created (thread-safe: concurrent creators wait for one upload).
 *   - Each session owns its working state: CPU executors (activation arenas), or on CUDA its own
 *     stream, cuDNN/cuBLASLt handles, workspaces and activation arenas. Sessions run concurrently,
 *     on the CPU and on one CUDA device alike.
 *   - A diffrt_session serves ONE call at a time. Use one session per thread. A call made while
 *     another call on the same session is running (another thread, or the session's own progress
 *     callback re-entering it) is refused with DIFFRT_E_INVALID_ARGUMENT ("session is busy")
 *     rather than racing. This detection is best effort and does not make freeing a session that
 *     another thread is using safe: never free a handle other threads may still pass in. A CUDA
 *     session may be used from any thread (one at a time): each call makes the session's device
 *     current and restores the calling thread's current CUDA device before returning.
 *   - Functions without a handle (version, init helpers, device count, diffrt_last_error) are
 *     always safe.
 *   - The progress callback runs on the thread that called diffrt_sample, between steps. It may
 *     call any function on other sessions and models, but not on its own session.
 *
 * Memory
 *   Before allocating, the working memory of a request (activations, workspaces, sampler state;
 *   not the shared weights) is estimated from its plan. A request above the session's
 *   memory_limit_bytes, or on CUDA above the device's free memory, fails with
 *   DIFFRT_E_OUT_OF_MEMORY and a message giving the bytes needed (and free). An allocation that
 *   fails anyway while running (host memory; on the device cudaErrorMemoryAllocation or a cuDNN /
 *   cuBLAS allocation failure) is DIFFRT_E_OUT_OF_MEMORY too, with the estimate and the free
 *   memory in the message. The session stays usable: its next (smaller) request runs normally.
 *   diffrt_sample_memory_estimate gives the estimate without running anything.
 *
 * Struct versioning
 *   Option/parameter structs start with `size_t struct_size`. Fill them with their *_init
 *   function (which sets struct_size = sizeof for the header you compiled against) and then
 *   change fields. A library built from a newer header accepts the struct of every earlier
 *   version (fields marked "since" are new in that version) and uses defaults for the fields it
 *   lacks; a struct_size it does not know is refused.
 *
 * Layouts
 *   diffrt_sample writes images NHWC float32 in [0, 1] ([batch, height, width, channels], like
 *   diffusers' output_type="np"), or with DIFFRT_OUTPUT_LATENTS the final latents NCHW float32,
 *   not yet divided by the VAE's scaling factor (like output_type="latent"). diffrt_eval takes and
 *   returns NCHW float32, like calling the diffusers UNet2DModel.
 *
 * Text-conditioned models (diffrt_model_info.context_dim > 0: a UNet2DConditionModel such as
 *   Stable Diffusion's, usually with its VAE decoder). diffrt_sample takes prompt embeddings (e.g.
 *   CLIP's last_hidden_state) and, for classifier-free guidance, negative prompt embeddings
 *   (diffusers uses the embeddings of the empty prompt), and does what StableDiffusionPipeline
 *   does with prompt_embeds= and negative_prompt_embeds=: the UNet runs on [negative; positive]
 *   rows, eps = eps_neg + g * (eps_pos - eps_neg), and the final latents are decoded by the VAE.
 *   height and width are in pixels. With DIFFRT_RNG_TORCH and the pipeline's scheduler the images
 *   reproduce diffusers' for the same seed and embeddings.
 *
 * Example: tests/api_example/example.c.
 */
#ifndef DIFFRT_H_
#define DIFFRT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. diffrt_version() reports the library's (they must agree). */
#define DIFFRT_VERSION_MAJOR 0
#define DIFFRT_VERSION_MINOR 4
#define DIFFRT_VERSION_PATCH 0

typedef enum diffrt_status {
  DIFFRT_OK = 0,
  DIFFRT_E_INVALID_ARGUMENT = 1, /* bad argument or API misuse (message names it) */
  DIFFRT_E_INVALID_MODEL = 2,    /* model file or scheduler config rejected */
  DIFFRT_E_UNSUPPORTED = 3,      /* valid request this build or machine does not support */
  DIFFRT_E_IO = 4,               /* open/read failed */
  DIFFRT_E_OUT_OF_MEMORY = 5,    /* host or device memory, or the session's memory limit, exceeded
                                    (the message gives the bytes needed) */
  DIFFRT_E_CUDA = 6,             /* CUDA/cuBLAS/cuDNN failure */
  DIFFRT_E_CANCELLED = 7,        /* the progress callback asked to stop */
  DIFFRT_E_INTERNAL = 8,         /* a bug: please report the message */
  DIFFRT_STATUS_FORCE_INT32_ = 0x7fffffff /* keeps every enum int-sized (ABI); not a status */
} diffrt_status;

typedef struct diffrt_model diffrt_model;     /* opaque, immutable after load */
typedef struct diffrt_session diffrt_session; /* opaque, one call at a time */

/* Message of the last status-returning call on this thread. Valid until the next diffrt call on
 * this thread; never NULL. */
const char* diffrt_last_error(void);
/* Fixed name of a status code, e.g. "DIFFRT_E_CANCELLED"; "unknown status" for other values. */
const char* diffrt_status_name(diffrt_status status);

/* Library version. Any pointer may be NULL. */
void diffrt_version(int* major, int* minor, int* patch);
const char* diffrt_version_string(void); /* "0.4.0" */

/* ---- models --------------------------------------------------------------------------------- */

/* Reads and validates a .drt file (made by `diffrt convert`). On success *out is a new model; on
 * failure *out is set to NULL. Backend weights are prepared by the first session per device. */
diffrt_status diffrt_model_load(const char* path, diffrt_model** out);
/* Releases the caller's reference. NULL is a no-op. Sessions keep the model alive. */
void diffrt_model_free(diffrt_model* model);

typedef enum diffrt_sampler {
  DIFFRT_SAMPLER_DEFAULT = 0, /* the model's: diffrt_model_info.default_sampler */
  DIFFRT_SAMPLER_DDPM = 1,
  DIFFRT_SAMPLER_DDIM = 2,
  /* since 0.4: every scheduler class (a value selects the class; its options come from the config) */
  DIFFRT_SAMPLER_PNDM = 3,         /* PNDMScheduler */
  DIFFRT_SAMPLER_DPMPP_2M = 4,     /* DPMSolverMultistepScheduler (as a request: dpmsolver++, order 2) */
  DIFFRT_SAMPLER_DPMPP_2M_SDE = 5, /* DPMSolverMultistepScheduler with sde-dpmsolver++ (as a request) */
  DIFFRT_SAMPLER_EULER = 6,        /* EulerDiscreteScheduler */
  DIFFRT_SAMPLER_EULER_A = 7,      /* EulerAncestralDiscreteScheduler */
  DIFFRT_SAMPLER_HEUN = 8,         /* HeunDiscreteScheduler */
  DIFFRT_SAMPLER_UNIPC = 9,        /* UniPCMultistepScheduler */
  DIFFRT_SAMPLER_LCM = 10,         /* LCMScheduler */
  DIFFRT_SAMPLER_FORCE_INT32_ = 0x7fffffff
} diffrt_sampler;

typedef struct diffrt_model_info {
  size_t struct_size;      /* set by the caller (diffrt_model_info_init) */
  int in_channels;         /* channels the UNet samples and diffrt_eval takes (latent channels of a
                              latent model) */
  int out_channels;        /* model output channels (2 * in_channels for learned variance) */
  int sample_size;         /* the UNet's default sample height = width (latents, for a latent
                              model); 0 when the model config has none */
  int downsample_factor;   /* the UNet's sample height and width must be multiples of this */
  int num_classes;         /* 0: unconditional; else labels are in [0, num_classes) */
  int null_class;          /* label of the unconditional branch for guidance; -1: none */
  int num_train_timesteps; /* of the model's default scheduler config; steps must not exceed it */
  /* ---- since 0.2 ---- */
  int context_dim;         /* text-conditioned models: channels of the prompt embeddings (the
                              UNet's cross_attention_dim: 768 SD 1.x, 1024 SD 2.x); 0: none */
  int has_vae;             /* 1: the file holds a VAE decoder; diffrt_sample returns decoded images */
  int vae_scale_factor;    /* pixels per latent (8 for SD); 1 without a VAE */
  float vae_scaling_factor; /* the VAE's scaling_factor (0.18215 for SD 1.x): latents are divided
                               by it before decoding; 0 without a VAE */
  int image_channels;      /* channels of the images diffrt_sample writes (3 with an SD VAE) */
  int image_size;          /* default image height = width in pixels: sample_size *
                              vae_scale_factor; 0 when the model config has no sample_size */
  diffrt_sampler default_sampler; /* the class DIFFRT_SAMPLER_DEFAULT runs: the model's scheduler
                                     (before 0.4 libraries: DDPM or DDIM); a DPM-Solver config of any
                                     variant reads as DIFFRT_SAMPLER_DPMPP_2M or _DPMPP_2M_SDE */
  /* ---- since 0.3 ---- */
  int has_text_encoder;    /* 1: prompts as text work (diffrt_sample_params.prompts) */
  /* ---- since 0.4 ---- */
  int has_vae_encoder;     /* 1: the file holds the VAE's encoder: init images (image-to-image,
                              inpainting) work on this latent model */
  int encoder_image_channels; /* channels of the init images it takes (3 for SD); 0 without one */
} diffrt_model_info;

void diffrt_model_info_init(diffrt_model_info* info);
diffrt_status diffrt_model_get_info(const diffrt_model* model, diffrt_model_info* info);

/* ---- devices and sessions ------------------------------------------------------------------- */

typedef enum diffrt_device {
  DIFFRT_DEVICE_CPU = 0,  /* the CPU reference backend (fp32, exact, slow) */
  DIFFRT_DEVICE_CUDA = 1, /* the CUDA backend; DIFFRT_E_UNSUPPORTED (saying why) when the library
                             was built without it or no CUDA device is usable */
  DIFFRT_DEVICE_FORCE_INT32_ = 0x7fffffff
} diffrt_device;

/* Devices of a kind this library can use: 1 for DIFFRT_DEVICE_CPU; for DIFFRT_DEVICE_CUDA the CUDA
 * devices present, 0 when there are none or the library has no CUDA backend (still DIFFRT_OK;
 * diffrt_last_error() then says why). */
diffrt_status diffrt_device_count(diffrt_device device, int* count);

typedef struct diffrt_session_options {
  size_t struct_size;
  diffrt_device device;     /* default DIFFRT_DEVICE_CPU */
  int threads;              /* CPU threads per call; 0 (default): the OpenMP default; max 1024 */
  uint64_t memory_limit_bytes; /* 0 (default): none; else a request whose estimated working memory
                                  (host for CPU sessions, device for CUDA sessions; the shared
                                  weights not counted) exceeds it fails with
                                  DIFFRT_E_OUT_OF_MEMORY up front */
  /* ---- since 0.2 ---- */
  int device_ordinal;       /* CUDA: the device, in [0, diffrt_device_count); default 0 */
  int deterministic;        /* CUDA: 1 picks convolution algorithms by cuDNN's heuristic rather than
                               by timing them in each session, so identical requests give
                               bit-identical results on every session; 0 (default): the fastest
                               measured, which may differ between sessions in the last bits */
} diffrt_session_options;

void diffrt_session_options_init(diffrt_session_options* options);
/* options may be NULL (defaults). On failure *out is set to NULL. The first session of a model on
 * a device prepares the model's weights there (DIFFRT_E_OUT_OF_MEMORY if they do not fit). */
diffrt_status diffrt_session_create(diffrt_model* model, const diffrt_session_options* options,
                                    diffrt_session** out);
/* NULL is a no-op (DIFFRT_OK). Refused (DIFFRT_E_INVALID_ARGUMENT, nothing freed) while a call on
 * the session is running, e.g. from its own progress callback. */
diffrt_status diffrt_session_free(diffrt_session* session);
/* Drops the session's cached per-shape buffers (they are rebuilt on demand). */
diffrt_status diffrt_session_release_cache(diffrt_session* session);

/* ---- sampling ------------------------------------------------------------------------------- */

typedef enum diffrt_rng {
  DIFFRT_RNG_PHILOX = 0, /* counter-based: image i is the same whatever the batch or device */
  DIFFRT_RNG_TORCH = 1,  /* reproduces torch.randn with a seeded CPU generator (diffusers) */
  DIFFRT_RNG_FORCE_INT32_ = 0x7fffffff
} diffrt_rng;

typedef enum diffrt_output {
  DIFFRT_OUTPUT_IMAGES = 0,  /* images NHWC in [0, 1] (VAE-decoded for latent models) */
  DIFFRT_OUTPUT_LATENTS = 1, /* text-conditioned models: the final latents, NCHW, unscaled */
  DIFFRT_OUTPUT_FORCE_INT32_ = 0x7fffffff
} diffrt_output;

/* Text embeddings: `data` holds batch * len * dim float32 values, [batch, len, dim] row-major
 * (e.g. CLIP's last_hidden_state: len 77, dim = context_dim). All zero and NULL: none. Read
 * during the call only. */
typedef struct diffrt_text_embeds {
  const float* data;
  int batch, len, dim;
} diffrt_text_embeds;

#define DIFFRT_STEPS_DEFAULT (-1) /* steps: the pipeline default (DDPM 1000, LCM 4, others 50) */

/* Called after each completed step (step = 1..total) on the sampling thread; return nonzero to
 * cancel: diffrt_sample then returns DIFFRT_E_CANCELLED and writes nothing. */
typedef int (*diffrt_progress_fn)(int step, int total, void* user);

typedef struct diffrt_sample_params {
  size_t struct_size;
  diffrt_sampler sampler;       /* default DIFFRT_SAMPLER_DEFAULT */
  int steps;                    /* in [1, num_train_timesteps], or DIFFRT_STEPS_DEFAULT (default) */
  float eta;                    /* DDIM only, in [0, 1]; default 0 */
  uint64_t seed;                /* default 0 */
  diffrt_rng rng;               /* default DIFFRT_RNG_PHILOX */
  uint32_t first_sample_index;  /* Philox: global index of image 0 (sharding a big run); default 0 */
  int batch;                    /* images, in [1, 4096]; default 1 */
  int height, width;            /* image size in pixels, multiples of downsample_factor *
                                   vae_scale_factor; 0 (default): image_size */
  const int32_t* class_labels;  /* class-conditional models: 1 label (used for every image) or */
  size_t num_class_labels;      /*   `batch` labels; other models: NULL / 0 */
  float guidance_scale;         /* classifier-free guidance in [0, 1000]; <= 1 (default 1): off.
                                   (StableDiffusionPipeline's default is 7.5.) */
  const char* scheduler_config_json; /* NULL (default) or a JSON object whose keys override the
                                        base scheduler config (from_config keyword arguments), e.g.
                                        "{\"timestep_spacing\":\"trailing\"}" */
  diffrt_progress_fn progress;  /* may be NULL */
  void* user;                   /* passed to progress */
  /* ---- since 0.2: text-conditioned models ---- */
  diffrt_text_embeds prompt_embeds;          /* required by text-conditioned models, refused by
                                                others: batch 1 (used for every image) or `batch`;
                                                dim = context_dim; len in [1, 65536] */
  diffrt_text_embeds negative_prompt_embeds; /* the unconditional rows of guidance: required when
                                                guidance_scale > 1 (unused otherwise), with the
                                                prompt embeddings' shape */
  diffrt_output output;         /* default DIFFRT_OUTPUT_IMAGES */
  /* ---- since 0.3: prompts as text, samplers by name ---- */
  const char* const* prompts;   /* text-conditioned models converted with their text encoder
                                   (diffrt_model_info.has_text_encoder): num_prompts UTF-8 prompts, as
                                   StableDiffusionPipeline(prompt=...); the call makes num_prompts *
                                   batch images (batch = images per prompt, each prompt's adjacent).
                                   Not together with prompt_embeds. Default NULL / 0 */
  size_t num_prompts;
  const char* const* negative_prompts; /* with guidance: NULL / 0 ("" for every prompt, as diffusers),
                                          one for every prompt, or one per prompt */
  size_t num_negative_prompts;
  const char* sampler_name;     /* NULL (default): `sampler` decides; else a sampler name, which then
                                   overrides `sampler`: a diffusers class name or ddpm ddim pndm
                                   dpmpp-2m dpmpp-2m-sde euler euler-a heun unipc lcm (0.3 libraries:
                                   ddpm and ddim only). The run uses NAME.from_config(base config) */
  /* ---- since 0.4: Karras sigmas, whole scheduler configs, image-to-image and inpainting ---- */
  int karras;                   /* nonzero: use_karras_sigmas = True (dpmpp-2m, dpmpp-2m-sde, euler,
                                   heun, unipc; other samplers refuse it). Default 0 */
  const char* scheduler_config_file_json; /* NULL (default) or the text of a whole diffusers
                                   scheduler_config.json, replacing the model's config as the base:
                                   taken as <_class_name>.from_config(it) (keys it lacks get the
                                   class's defaults). scheduler_config_json still applies on top */
  /* Image-to-image and inpainting (StableDiffusionImg2ImgPipeline / StableDiffusionInpaintPipeline;
   * pixel models: SDEdit). The image after VaeImageProcessor's resize, before its 2x - 1: NHWC
   * float32 in [0, 1], [init_image_batch, init_image_height, init_image_width,
   * init_image_channels]; channels = the VAE encoder's (3 for SD; latent models need a VAE
   * encoder) or in_channels (pixel models); its size is the output's (height/width 0 take it);
   * batch 1 or a divisor of the images made (tiled, as diffusers). NULL / 0 (default): none. The
   * image is VAE-encoded with the request's generator (posterior sample, then the noise). */
  const float* init_image;
  int init_image_batch, init_image_height, init_image_width, init_image_channels;
  /* Inpainting mask, with init_image: [mask_batch, mask_height, mask_width] float32 in [0, 1] at
   * the image's size, white (>= 0.5) = repaint; binarised at 0.5, nearest-downsampled to the
   * latents. Required by 9-channel inpainting UNets. NULL / 0 (default): none */
  const float* mask;
  int mask_batch, mask_height, mask_width;
  double strength;              /* with init_image, in (0, 1]: int(steps * strength) steps run from
                                   the noised image. 0 (default): the pipelines' defaults, 0.8
                                   image-to-image and 1.0 with a mask */
} diffrt_sample_params;

void diffrt_params_init(diffrt_sample_params* params);

/* Number of floats diffrt_sample will write for these params (batch * height * width *
 * image_channels, or the latents' size), after validating them. Checks no memory. */
diffrt_status diffrt_sample_output_size(diffrt_session* session, const diffrt_sample_params* params,
                                        size_t* out_floats);

/* Estimated working memory in bytes of diffrt_sample with these params on this session's device
 * (host for CPU sessions, device for CUDA sessions): activations, workspaces and sampler state,
 * not the weights shared by the model's sessions. Validates the params; checks no limit. */
diffrt_status diffrt_sample_memory_estimate(diffrt_session* session, const diffrt_sample_params* params,
                                            uint64_t* out_bytes);

/* Runs the whole sampling loop (and the VAE decode of a latent model) and writes the images,
 * NHWC float32 in [0, 1], or the latents (DIFFRT_OUTPUT_LATENTS) to out_images. out_written (may
 * be NULL) receives the number of floats written. When out_capacity_floats is too small the call
 * fails with DIFFRT_E_INVALID_ARGUMENT (or DIFFRT_E_OUT_OF_MEMORY if the request cannot fit in
 * memory either) and *out_written is the size needed. The session stays usable after any
 * failure, including cancellation and out-of-memory. */
diffrt_status diffrt_sample(diffrt_session* session, const diffrt_sample_params* params,
                            float* out_images, size_t out_capacity_floats, size_t* out_written);

/* One forward pass of a pixel-space UNet: out = model(sample, timesteps[, class_labels]).
 *   sample:       [n, in_channels, h, w] NCHW float32
 *   timesteps:    [n] float32
 *   class_labels: [n] (class-conditional models) or NULL
 *   out:          [n, out_channels, h, w] NCHW float32; same capacity rules as diffrt_sample.
 * Text-conditioned models need encoder hidden states this call does not take: they are refused
 * with DIFFRT_E_UNSUPPORTED (use diffrt_sample, or the CLI's `diffrt eval`). */
diffrt_status diffrt_eval(diffrt_session* session, const float* sample, int n, int h, int w,
                          const float* timesteps, const int32_t* class_labels, float* out,
                          size_t out_capacity_floats, size_t* out_written);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DIFFRT_H_ */
