// StableDiffusionPipeline semantics on top of the sampler: text embeddings as the UNet's
// encoder_hidden_states ([negative; positive] with guidance, as diffusers concatenates them),
// and the VAE decode that follows the loop. Backend-independent helpers plus the CPU path.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cpu_executor.h"
#include "model/model_file.h"
#include "runtime/sampler.h"

namespace diffrt {

// Text embeddings [batch, len, dim] fp32, e.g. CLIP's last_hidden_state.
struct TextEmbeds {
  std::vector<float> data;
  int batch = 0, len = 0, dim = 0;
};

// Reads a float32 .npy [B, L, D]; errors name the file.
TextEmbeds read_text_embeds(const std::string& path);

// The UNet's encoder_hidden_states for a request: [negative; positive] (2B rows) with guidance,
// else positive alone. Checks shapes against each other and the model's context_dim. `negative`
// may be null only without guidance.
std::vector<float> model_context(const Graph& unet, const TextEmbeds& positive, const TextEmbeds* negative,
                                 bool guidance);

// The spatial factor between latents and pixels of the model file's VAE (8 for SD).
int vae_scale_factor(const ModelFile& mf);

// Denoising loop on the CPU backend for a text-conditioned UNet: returns final latents [B,h,w,C]
// NHWC. `context` is model_context()'s result with len tokens per row.
// `inputs`: image latents / mask / extra model-input channels / explicit noise for img2img, inpainting and tests.
std::vector<float> sample_latents_cpu(const ModelFile& mf, const CpuWeights& weights, const SchedulerConfig& cfg,
                                      const SampleRequest& req, const std::vector<float>& context, int len,
                                      const ProgressFn& progress, const SamplerInputs& inputs = {});

// VAE decode on the CPU backend: latents [n,h,w,C] NHWC (not yet divided by the scaling factor) ->
// images [n, f*h, f*w, 3] NHWC in about [-1, 1] (map with to_image_01).
std::vector<float> decode_latents_cpu(const ModelFile& mf, const CpuWeights& weights, const std::vector<float>& latents,
                                      int n, int h, int w);

}  // namespace diffrt
