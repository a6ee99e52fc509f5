/* diffrt C API: load a converted model (.drt), open sessions on it, sample images or run one
 * forward pass. Plain C99, stable ABI: opaque handles, status codes, size-prefixed structs.
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
 *   - A diffrt_session serves ONE call at a time. Use one session per thread. A call made while
 *     another call on the same session is running (another thread, or the session's own progress
 *     callback re-entering it) is refused with DIFFRT_E_INVALID_ARGUMENT ("session is busy")
 *     rather than racing. This detection is best effort and does not make freeing a session that
 *     another thread is using safe: never free a handle other threads may still pass in.
 *   - Functions without a handle (version, init helpers, diffrt_last_error) are always safe.
 *   - The progress callback runs on the thread that called diffrt_sample, between steps. It may
 *     call any function on other sessions and models, but not on its own session.
 *
 * Struct versioning
 *   Option/parameter structs start with `size_t struct_size`. Fill them with their *_init
 *   function (which sets struct_size = sizeof for the header you compiled against) and then
 *   change fields. A library built from a newer header accepts older, shorter structs and uses
 *   defaults for the fields they lack; a struct_size it does not know is refused.
 *
 * Layouts
 *   diffrt_sample writes images NHWC float32 in [0, 1] ([batch, height, width, channels], like
 *   diffusers' output_type="np"). diffrt_eval takes and returns NCHW float32, like calling the
 *   diffusers UNet2DModel.
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
#define DIFFRT_VERSION_MINOR 1
#define DIFFRT_VERSION_PATCH 0

typedef enum diffrt_status {
  DIFFRT_OK = 0,
  DIFFRT_E_INVALID_ARGUMENT = 1, /* bad argument or API misuse (message names it) */
  DIFFRT_E_INVALID_MODEL = 2,    /* model file or scheduler config rejected */
  DIFFRT_E_UNSUPPORTED = 3,      /* valid request this build does not support */
  DIFFRT_E_IO = 4,               /* open/read failed */
  DIFFRT_E_OUT_OF_MEMORY = 5,    /* allocation failed, or the session's memory limit is exceeded */
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
const char* diffrt_version_string(void); /* "0.1.0" */

/* ---- models --------------------------------------------------------------------------------- */

/* Reads and validates a .drt file (made by `diffrt convert`) and prepares its weights.
 * On success *out is a new model; on failure *out is set to NULL. */
diffrt_status diffrt_model_load(const char* path, diffrt_model** out);
/* Releases the caller's reference. NULL is a no-op. Sessions keep the model alive. */
void diffrt_model_free(diffrt_model* model);

typedef struct diffrt_model_info {
  size_t struct_size;     /* set by the caller (diffrt_model_info_init) */
  int in_channels;        /* image channels sampled and taken by diffrt_eval */
  int out_channels;       /* model output channels (2 * in_channels for learned variance) */
  int sample_size;        /* default height = width; 0 when the model config has none */
  int downsample_factor;  /* height and width must be multiples of this */
  int num_classes;        /* 0: unconditional; else labels are in [0, num_classes) */
  int null_class;         /* label of the unconditional branch for guidance; -1: none */
  int num_train_timesteps; /* of the model's default scheduler config; steps must not exceed it */
} diffrt_model_info;

void diffrt_model_info_init(diffrt_model_info* info);
diffrt_status diffrt_model_get_info(const diffrt_model* model, diffrt_model_info* info);

/* ---- sessions ------------------------------------------------------------------------------- */

typedef enum diffrt_device {
  DIFFRT_DEVICE_CPU = 0, /* the CPU reference backend */
  DIFFRT_DEVICE_CUDA = 1, /* not available yet: diffrt_session_create returns DIFFRT_E_UNSUPPORTED */
  DIFFRT_DEVICE_FORCE_INT32_ = 0x7fffffff
} diffrt_device;

typedef struct diffrt_session_options {
  size_t struct_size;
  diffrt_device device;     /* default DIFFRT_DEVICE_CPU */
  int threads;              /* CPU threads per call; 0 (default): the OpenMP default; max 1024 */
  uint64_t memory_limit_bytes; /* 0 (default): none; else a request whose estimated working
                                  memory exceeds it fails with DIFFRT_E_OUT_OF_MEMORY up front */
} diffrt_session_options;

void diffrt_session_options_init(diffrt_session_options* options);
/* options may be NULL (defaults). On failure *out is set to NULL. */
diffrt_status diffrt_session_create(diffrt_model* model, const diffrt_session_options* options,
                                    diffrt_session** out);
/* NULL is a no-op (DIFFRT_OK). Refused (DIFFRT_E_INVALID_ARGUMENT, nothing freed) while a call on
 * the session is running, e.g. from its own progress callback. */
diffrt_status diffrt_session_free(diffrt_session* session);
/* Drops the session's cached per-shape buffers (they are rebuilt on demand). */
diffrt_status diffrt_session_release_cache(diffrt_session* session);

/* ---- sampling ------------------------------------------------------------------------------- */

typedef enum diffrt_sampler {
  DIFFRT_SAMPLER_DEFAULT = 0, /* DDIM if the scheduler config is a DDIMScheduler, else DDPM */
  DIFFRT_SAMPLER_DDPM = 1,
  DIFFRT_SAMPLER_DDIM = 2,
  DIFFRT_SAMPLER_FORCE_INT32_ = 0x7fffffff
} diffrt_sampler;

typedef enum diffrt_rng {
  DIFFRT_RNG_PHILOX = 0, /* counter-based: image i is the same whatever the batch or device */
  DIFFRT_RNG_TORCH = 1,  /* reproduces torch.randn with a seeded CPU generator (diffusers) */
  DIFFRT_RNG_FORCE_INT32_ = 0x7fffffff
} diffrt_rng;

#define DIFFRT_STEPS_DEFAULT (-1) /* steps: the pipeline default (DDPM 1000, DDIM 50) */

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
  int height, width;            /* multiples of downsample_factor; 0 (default): sample_size */
  const int32_t* class_labels;  /* class-conditional models: 1 label (used for every image) or */
  size_t num_class_labels;      /*   `batch` labels; unconditional models: NULL / 0 */
  float guidance_scale;         /* classifier-free guidance in [0, 1000]; <= 1 (default 1): off */
  const char* scheduler_config_json; /* NULL (default) or a JSON object whose keys override the
                                        model's diffusers scheduler config, e.g.
                                        "{\"timestep_spacing\":\"trailing\"}" */
  diffrt_progress_fn progress;  /* may be NULL */
  void* user;                   /* passed to progress */
} diffrt_sample_params;

void diffrt_params_init(diffrt_sample_params* params);

/* Number of floats diffrt_sample will write for these params (batch * height * width *
 * in_channels), after validating them. */
diffrt_status diffrt_sample_output_size(diffrt_session* session, const diffrt_sample_params* params,
                                        size_t* out_floats);

/* Runs the whole sampling loop and writes the images, NHWC float32 in [0, 1], to out_images.
 * out_written (may be NULL) receives the number of floats written; when out_capacity_floats is
 * too small the call fails with DIFFRT_E_INVALID_ARGUMENT and *out_written is the size needed.
 * The session stays usable after any failure, including cancellation. */
diffrt_status diffrt_sample(diffrt_session* session, const diffrt_sample_params* params,
                            float* out_images, size_t out_capacity_floats, size_t* out_written);

/* One forward pass: out = model(sample, timesteps[, class_labels]).
 *   sample:       [n, in_channels, h, w] NCHW float32
 *   timesteps:    [n] float32
 *   class_labels: [n] (class-conditional models) or NULL
 *   out:          [n, out_channels, h, w] NCHW float32; same capacity rules as diffrt_sample. */
diffrt_status diffrt_eval(diffrt_session* session, const float* sample, int n, int h, int w,
                          const float* timesteps, const int32_t* class_labels, float* out,
                          size_t out_capacity_floats, size_t* out_written);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DIFFRT_H_ */
