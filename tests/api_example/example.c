/* diffrt C API example (C99): load a model, open a session, sample 4 images with classifier-free
 * guidance, print per-image statistics and write them as one PGM/PPM strip.
 *   - class-conditional or unconditional pixel models: 4 images of one class;
 *   - text-conditioned latent models (Stable Diffusion style): 4 images from prompt embeddings and
 *     negative prompt embeddings, decoded by the model's VAE. A real program passes CLIP's
 *     last_hidden_state for the prompt and for "" (diffusers' negative default); this example makes
 *     up deterministic embeddings of the right shape [1, 77, context_dim].
 *
 *   diffrt_example MODEL.drt [CLASS] [OUTPUT.pgm|.ppm] [cpu|cuda]
 *
 * Every call's status is checked; on failure the program prints diffrt_last_error() and exits 1.
 * Built and run by ctest (tests/api_example/run_example.sh) on tiny converted test models.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffrt.h"

#define CHECK(call)                                                                      \
  do {                                                                                   \
    diffrt_status st_ = (call);                                                          \
    if (st_ != DIFFRT_OK) {                                                              \
      fprintf(stderr, "%s failed: %s: %s\n", #call, diffrt_status_name(st_), diffrt_last_error()); \
      goto done;                                                                         \
    }                                                                                    \
  } while (0)

/* Progress callback: print a dot per step; returning nonzero would cancel the run. */
static int on_progress(int step, int total, void* user) {
  (void)user;
  fputc('.', stderr);
  if (step == total) fputc('\n', stderr);
  return 0;
}

/* Writes n images (NHWC floats in [0, 1], 1 or 3 channels) side by side as binary PGM/PPM. */
static int write_strip(const char* path, const float* img, int n, int h, int w, int c) {
  FILE* f = fopen(path, "wb");
  int ok, y, i, x, k;
  if (!f) return 0;
  fprintf(f, "P%c\n%d %d\n255\n", c == 1 ? '5' : '6', n * w, h);
  for (y = 0; y < h; ++y)
    for (i = 0; i < n; ++i)
      for (x = 0; x < w; ++x)
        for (k = 0; k < (c == 1 ? 1 : 3); ++k) {
          float v = img[(((size_t)i * h + y) * w + x) * c + k];
          fputc((int)(v * 255.0f + 0.5f), f);
        }
  ok = !ferror(f);
  return fclose(f) == 0 && ok;
}

/* Stand-in embeddings: values in [-1, 1) from a fixed linear congruential sequence. */
static float* made_up_embeds(size_t n, unsigned seed) {
  float* e = (float*)malloc(n * sizeof(float));
  size_t i;
  if (!e) return NULL;
  for (i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    e[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
  }
  return e;
}

int main(int argc, char** argv) {
  diffrt_model* model = NULL;
  diffrt_session* session = NULL;
  diffrt_model_info info;
  diffrt_session_options options;
  diffrt_sample_params params;
  float *images = NULL, *prompt = NULL, *negative = NULL;
  size_t floats = 0, written = 0, per_image, i, j;
  int32_t label;
  int rc = 1, side;

  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.drt [CLASS] [OUTPUT.pgm|.ppm] [cpu|cuda]\n", argv[0]);
    return 2;
  }
  printf("diffrt %s\n", diffrt_version_string());

  CHECK(diffrt_model_load(argv[1], &model));
  diffrt_model_info_init(&info);
  CHECK(diffrt_model_get_info(model, &info));
  if (info.context_dim > 0)
    printf("model: text-conditioned (context_dim %d), %d latent channel(s), %s, %dx%d images\n", info.context_dim,
           info.in_channels, info.has_vae ? "with a VAE decoder" : "no VAE", info.image_size, info.image_size);
  else
    printf("model: %d channel(s), %dx%d, %d classes (null class %d)\n", info.in_channels, info.sample_size,
           info.sample_size, info.num_classes, info.null_class);

  diffrt_session_options_init(&options);
  options.device = argc > 4 && strcmp(argv[4], "cuda") == 0 ? DIFFRT_DEVICE_CUDA : DIFFRT_DEVICE_CPU;
  CHECK(diffrt_session_create(model, &options, &session));

  label = argc > 2 ? (int32_t)atoi(argv[2]) : 0;
  diffrt_params_init(&params);
  params.sampler = DIFFRT_SAMPLER_DDIM;
  params.steps = 10;
  params.seed = 1234;
  params.batch = 4;
  params.progress = on_progress;
  if (info.context_dim > 0) {
    /* One prompt for all 4 images ([1, 77, dim]), and the negative prompt's embeddings for guidance. */
    const size_t n = (size_t)77 * (size_t)info.context_dim;
    prompt = made_up_embeds(n, 1u);
    negative = made_up_embeds(n, 2u);
    if (!prompt || !negative) {
      fprintf(stderr, "out of memory\n");
      goto done;
    }
    params.prompt_embeds.data = prompt;
    params.prompt_embeds.batch = 1;
    params.prompt_embeds.len = 77;
    params.prompt_embeds.dim = info.context_dim;
    params.negative_prompt_embeds = params.prompt_embeds;
    params.negative_prompt_embeds.data = negative;
    params.guidance_scale = 7.5f; /* StableDiffusionPipeline's default */
  } else {
    params.class_labels = &label; /* one label: used for all 4 images */
    params.num_class_labels = info.num_classes > 0 ? 1 : 0;
    if (info.num_classes == 0) params.class_labels = NULL;
    params.guidance_scale = info.null_class >= 0 ? 3.0f : 1.0f;
  }

  CHECK(diffrt_sample_output_size(session, &params, &floats));
  images = (float*)malloc(floats * sizeof(float));
  if (!images) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  CHECK(diffrt_sample(session, &params, images, floats, &written));

  per_image = written / (size_t)params.batch;
  for (i = 0; i < (size_t)params.batch; ++i) {
    double sum = 0, lo = 1, hi = 0;
    for (j = 0; j < per_image; ++j) {
      double v = images[i * per_image + j];
      sum += v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (info.context_dim > 0)
      printf("image %u (prompt): mean %.4f min %.4f max %.4f\n", (unsigned)i, sum / (double)per_image, lo, hi);
    else
      printf("image %u (class %d): mean %.4f min %.4f max %.4f\n", (unsigned)i, (int)label, sum / (double)per_image, lo, hi);
  }
  side = info.image_size;
  if (argc > 3 && (info.image_channels == 1 || info.image_channels >= 3)) {
    if (!write_strip(argv[3], images, params.batch, side, side, info.image_channels)) {
      fprintf(stderr, "cannot write %s\n", argv[3]);
      goto done;
    }
    printf("wrote %s\n", argv[3]);
  }
  rc = 0;

done:
  free(images);
  free(prompt);
  free(negative);
  if (session && diffrt_session_free(session) != DIFFRT_OK) {
    fprintf(stderr, "diffrt_session_free: %s\n", diffrt_last_error());
    rc = 1;
  }
  diffrt_model_free(model);
  return rc;
}
