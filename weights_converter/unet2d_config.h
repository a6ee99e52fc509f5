// diffusers UNet2DModel config.json -> a validated struct. Missing keys take diffusers' class
// defaults; a key present as null means None (attention_head_dim: null = one head per block).
// Values we do not support are refused naming the field and the supported values.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace diffrt {

struct UNet2DConfig {
  int in_channels = 3, out_channels = 3;
  int sample_size = 0;  // 0 when absent/null
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<std::string> down_block_types, up_block_types;
  std::vector<int> block_out_channels;
  int layers_per_block = 2;
  double mid_block_scale_factor = 1.0;
  int downsample_padding = 1;
  int attention_head_dim = 8;  // 0 = None (one head spanning the channels)
  int norm_num_groups = 32;
  int attn_norm_num_groups = 0;  // 0 = None
  double norm_eps = 1e-5;
  bool scale_shift = false;  // resnet_time_scale_shift == "scale_shift"
  bool add_attention = true;
  bool has_mid_block = true;
  int time_embedding_dim = 0;  // 0 = 4 * block_out_channels[0]
  int num_class_embeds = 0;

  int temb_dim() const { return time_embedding_dim ? time_embedding_dim : 4 * block_out_channels[0]; }
};

// `origin` names the file in errors.
UNet2DConfig parse_unet2d_config(const nlohmann::json& j, const std::string& origin);

}  // namespace diffrt
