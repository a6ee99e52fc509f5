// diffusers UNet2DConditionModel config.json (Stable Diffusion 1.x/2.x) -> a validated struct.
// Missing keys take diffusers 0.27.2's class defaults; a key present as null means None. Features
// we do not build (SDXL added embeddings, class embeddings, dual/only cross-attention, gated
// attention, ...) are refused naming the field. See shared/research/diffusers_spec.md section 11.
//
// Naming trap: `attention_head_dim` is the number of HEADS here (num_attention_heads, when set,
// takes precedence); the head size is channels / heads.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace diffrt {

struct UNet2DConditionConfig {
  int in_channels = 4, out_channels = 4;
  int sample_size = 0;  // 0 when absent/null
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<std::string> down_block_types, up_block_types;  // CrossAttn*Block2D / *Block2D
  bool has_mid_block = true;                                   // UNetMidBlock2DCrossAttn
  std::vector<int> block_out_channels;
  int layers_per_block = 2;
  int downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int norm_num_groups = 32;
  double norm_eps = 1e-5;
  int cross_attention_dim = 1280;
  std::vector<int> transformer_layers;  // per level (down order); the mid block uses the last
  std::vector<int> heads;               // attention heads per level (down order); mid uses the last
  bool use_linear_projection = false;
  bool upcast_attention = false;  // accepted: attention always accumulates in fp32 here
  int time_embedding_dim = 0;     // 0 = 4 * block_out_channels[0]

  int levels() const { return int(block_out_channels.size()); }
  int temb_dim() const { return time_embedding_dim ? time_embedding_dim : 4 * block_out_channels[0]; }
  static bool is_cross_attn(const std::string& block_type) { return block_type.rfind("CrossAttn", 0) == 0; }
};

// `origin` names the file in errors.
UNet2DConditionConfig parse_unet2d_condition_config(const nlohmann::json& j, const std::string& origin);

}  // namespace diffrt
