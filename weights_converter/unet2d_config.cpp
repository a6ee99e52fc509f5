#include "weights_converter/unet2d_config.h"

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {

namespace {
constexpr int kMaxChannels = 16384;
constexpr size_t kMaxLevels = 8;

std::string strip_unetres(const std::string& s) {
  return s.rfind("UNetRes", 0) == 0 ? s.substr(7) : s;  // diffusers strips this prefix too
}
}  // namespace

UNet2DConfig parse_unet2d_config(const nlohmann::json& j, const std::string& origin) {
  JsonFields f(j, origin);
  UNet2DConfig c;
  std::string cls = f.get_string("_class_name", "UNet2DModel");
  if (cls != "UNet2DModel")
    fail(ErrorCode::Unsupported, origin + ": unsupported _class_name=\"" + cls +
                                     "\" (supported: UNet2DModel)");
  c.in_channels = int(f.get_int("in_channels", 3, 1, 64));
  c.out_channels = int(f.get_int("out_channels", 3, 1, 128));
  c.sample_size = f.get_sample_size("sample_size");
  c.center_input_sample = f.get_bool("center_input_sample", false);
  f.get_enum("time_embedding_type", "positional", {"positional"});
  c.freq_shift = f.get_number("freq_shift", 0, -1e6, 1e6);
  c.flip_sin_to_cos = f.get_bool("flip_sin_to_cos", true);

  if (f.has("down_block_types")) {
    for (auto& s : f.get_string_list("down_block_types", kMaxLevels)) c.down_block_types.push_back(strip_unetres(s));
  } else {
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
  }
  if (f.has("up_block_types")) {
    for (auto& s : f.get_string_list("up_block_types", kMaxLevels)) c.up_block_types.push_back(strip_unetres(s));
  } else {
    c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  }
  if (f.has("block_out_channels")) {
    for (long long v : f.get_int_list("block_out_channels", 1, kMaxChannels, kMaxLevels)) c.block_out_channels.push_back(int(v));
  } else {
    c.block_out_channels = {224, 448, 672, 896};
  }
  for (const auto& t : c.down_block_types)
    if (t != "DownBlock2D" && t != "AttnDownBlock2D")
      fail(ErrorCode::Unsupported, origin + ": unsupported down_block_types entry \"" + t +
                                       "\" (supported: DownBlock2D, AttnDownBlock2D)");
  for (const auto& t : c.up_block_types)
    if (t != "UpBlock2D" && t != "AttnUpBlock2D")
      fail(ErrorCode::Unsupported, origin + ": unsupported up_block_types entry \"" + t +
                                       "\" (supported: UpBlock2D, AttnUpBlock2D)");
  if (c.down_block_types.size() != c.block_out_channels.size())
    f.fail("down_block_types", "has " + std::to_string(c.down_block_types.size()) +
                                   " entries but block_out_channels has " + std::to_string(c.block_out_channels.size()));
  if (c.up_block_types.size() != c.block_out_channels.size())
    f.fail("up_block_types", "has " + std::to_string(c.up_block_types.size()) +
                                 " entries but block_out_channels has " + std::to_string(c.block_out_channels.size()));

  c.layers_per_block = int(f.get_int("layers_per_block", 2, 1, 16));
  c.mid_block_scale_factor = f.get_number("mid_block_scale_factor", 1.0, 1e-6, 1e6);
  c.downsample_padding = int(f.get_int("downsample_padding", 1, 0, 1));
  f.get_enum("downsample_type", "conv", {"conv"});
  f.get_enum("upsample_type", "conv", {"conv"});
  f.get_enum("act_fn", "silu", {"silu", "swish"});
  if (f.has("attention_head_dim") && f.is_null("attention_head_dim")) c.attention_head_dim = 0;
  else c.attention_head_dim = int(f.get_int("attention_head_dim", 8, 1, kMaxChannels));
  c.norm_num_groups = int(f.get_int("norm_num_groups", 32, 1, kMaxChannels));
  c.attn_norm_num_groups = int(f.get_opt_int("attn_norm_num_groups", 1, kMaxChannels).value_or(0));
  c.norm_eps = f.get_number("norm_eps", 1e-5, 0.0, 1.0);
  c.scale_shift = f.get_enum("resnet_time_scale_shift", "default", {"default", "scale_shift"}) == "scale_shift";
  c.add_attention = f.get_bool("add_attention", true);
  if (f.has("mid_block_type")) {
    if (f.is_null("mid_block_type")) c.has_mid_block = false;
    else f.get_enum("mid_block_type", "UNetMidBlock2D", {"UNetMidBlock2D"});
  }
  c.time_embedding_dim = int(f.get_opt_int("time_embedding_dim", 1, kMaxChannels * 4).value_or(0));
  if (f.has("class_embed_type") && !f.is_null("class_embed_type"))
    fail(ErrorCode::Unsupported, origin + ": unsupported class_embed_type=" + j["class_embed_type"].dump() +
                                     " (supported: null with num_class_embeds)");
  c.num_class_embeds = int(f.get_opt_int("num_class_embeds", 1, 1 << 20).value_or(0));

  // Structural consistency the graph relies on.
  for (size_t i = 0; i < c.block_out_channels.size(); ++i) {
    int ch = c.block_out_channels[i];
    if (ch % c.norm_num_groups)
      f.fail("norm_num_groups", std::to_string(c.norm_num_groups) + " does not divide block_out_channels[" +
                                    std::to_string(i) + "]=" + std::to_string(ch));
    bool attn = c.down_block_types[i] == "AttnDownBlock2D" ||
                c.up_block_types[c.block_out_channels.size() - 1 - i] == "AttnUpBlock2D";
    if (attn && c.attention_head_dim && ch % c.attention_head_dim)
      f.fail("attention_head_dim", std::to_string(c.attention_head_dim) + " does not divide block_out_channels[" +
                                       std::to_string(i) + "]=" + std::to_string(ch));
  }
  int last = c.block_out_channels.back();
  if (c.has_mid_block && c.add_attention) {
    if (c.attention_head_dim && last % c.attention_head_dim)
      f.fail("attention_head_dim", "does not divide the mid-block channels " + std::to_string(last));
    if (c.attn_norm_num_groups && last % c.attn_norm_num_groups)
      f.fail("attn_norm_num_groups", "does not divide the mid-block channels " + std::to_string(last));
  }
  return c;
}

}  // namespace diffrt
