// The decoder half of a diffusers AutoencoderKL (the Stable Diffusion VAE): config parsing (strict,
// diffusers 0.27.2 defaults, unsupported features refused by name) and the graph
//   z / scaling_factor -> post_quant_conv (1x1) -> decoder.conv_in -> decoder.mid_block
//   (resnet, 1-head self-attention with GroupNorm eps 1e-6, resnet) -> decoder.up_blocks (each
//   layers_per_block+1 resnets without time embedding, eps 1e-6; 2x upsample except the last)
//   -> decoder.conv_norm_out + SiLU -> decoder.conv_out
// (spec section 11.6). Graph input "sample" [N,h,w,latent_channels] (no timestep); output "out"
// [N,h*2^(levels-1),w*2^(levels-1),out_channels] in about [-1, 1]. Stored tensor names are
// "vae.<diffusers name>"; the encoder and quant_conv tensors are not needed and are skipped.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "weights_converter/block_builder.h"

namespace diffrt {

struct AutoencoderKLConfig {
  int in_channels = 3, out_channels = 3;
  int latent_channels = 4;
  std::vector<std::string> down_block_types;  // DownEncoderBlock2D (the encoder: vae_encoder_builder.h)
  std::vector<std::string> up_block_types;  // UpDecoderBlock2D
  std::vector<int> block_out_channels;
  int layers_per_block = 1;
  int norm_num_groups = 32;
  int sample_size = 32;
  double scaling_factor = 0.18215;
  bool force_upcast = true;
  bool use_quant_conv = true;  // encoder side
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  int levels() const { return int(block_out_channels.size()); }
  int upscale_factor() const { return 1 << (levels() - 1); }
};

constexpr const char* kVaeTensorPrefix = "vae.";

// `origin` names the file in errors.
AutoencoderKLConfig parse_autoencoder_kl_config(const nlohmann::json& j, const std::string& origin);

// `strict`: unexpected tensors (other than encoder.* and quant_conv.*) are errors, else warnings.
BuiltModel build_vae_decoder(const AutoencoderKLConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                             DType dtype, bool strict, const std::string& origin);
Graph build_vae_decoder_graph(const AutoencoderKLConfig& cfg);
// The checkpoint tensors (diffusers names, without the "vae." prefix) the decoder needs.
std::map<std::string, TensorShape> vae_decoder_expected_tensors(const AutoencoderKLConfig& cfg);

}  // namespace diffrt
