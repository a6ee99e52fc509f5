// diffusers folder -> .drt model file. Accepts
//  * a UNet2DModel or UNet2DConditionModel folder (config.json + diffusion_pytorch_model.safetensors
//    or a sharded index, optional scheduler_config.json);
//  * a pipeline folder (model_index.json, unet/, scheduler/; for latent diffusion -- a
//    UNet2DConditionModel -- also vae/ with an AutoencoderKL, whose decoder and encoder (+ quant_conv, for
//    image-to-image and inpainting) are stored with the UNet, and,
//    when model_index.json names them, text_encoder/ (transformers CLIPTextModel: config.json +
//    model.safetensors or a sharded index) and tokenizer/ (CLIPTokenizer: vocab.json, merges.txt,
//    tokenizer_config.json, special_tokens_map.json), stored so `diffrt sample --prompt` works).
//  * a DiTPipeline folder (model_index.json naming a transformer: Transformer2DModel with norm_type ada_norm_zero,
//    vae/, scheduler/, optional id2label) or a bare Transformer2DModel folder: weights_converter/dit_convert.h.
// Families: "unet2d" (UNet2DModel), "unet2d_condition" (UNet2DConditionModel) and "dit". Pickle checkpoints are
// refused.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace diffrt {

// Mixed precision per component (diffusers' semantics): each graph is stored, and runs, in its own dtype.
//   denoiser      dtype
//   VAE decoder   vae_dtype; unset: fp32 when dtype is fp16 and the VAE config's force_upcast is true (diffusers
//                 upcasts such a VAE to fp32 before decoding: the SD VAE overflows fp16), else dtype
//   text encoder  text_encoder_dtype; unset: dtype (diffusers runs it in the pipeline's dtype)
// Setting vae_dtype or text_encoder_dtype when that component is not converted is an error.
struct ConvertOptions {
  std::string input;             // diffusers model or pipeline folder
  std::string output;            // .drt path (written atomically)
  DType dtype = DType::F32;      // the denoiser, and the default of the components below
  std::optional<DType> vae_dtype;
  std::optional<DType> text_encoder_dtype;
  std::string scheduler_config;  // overrides the folder's scheduler_config.json when set
  bool strict = false;           // unexpected tensors are errors
  int null_class = -2;           // -2: auto (last class of a class-conditional UNet; 1000 for a DiT), -1: none
  bool no_vae = false;           // latent-diffusion pipelines: convert the denoiser without the VAE (decoder and encoder)
  bool no_vae_encoder = false;   // latent-diffusion pipelines: keep the VAE decoder, leave out its encoder
  bool no_text_encoder = false;  // latent-diffusion pipelines: leave out the text encoder and tokenizer
};

struct ConvertReport {
  std::string family;            // "unet2d", "unet2d_condition" or "dit"
  std::string unet_dir, weights_source, scheduler_source;  // unet_dir: the denoiser's folder (DiT: transformer/)
  std::string vae_source;        // the VAE weights file ("" when no VAE was converted)
  std::string text_encoder_source;  // the text encoder weights file ("" when none was converted)
  size_t tensors = 0, nodes = 0, vae_nodes = 0, vae_encoder_nodes = 0, text_encoder_nodes = 0;
  DType dtype = DType::F32, vae_dtype = DType::F32, text_encoder_dtype = DType::F32;  // as stored (the VAE's
                                                                                     // encoder: vae_dtype)
  uint64_t bytes = 0;
  std::vector<std::string> warnings;
};

ConvertReport convert_diffusers(const ConvertOptions& opt);

}  // namespace diffrt
