#include "weights_converter/unet2d_condition_config.h"

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {

namespace {

using nlohmann::json;

constexpr int kMaxChannels = 16384;
constexpr size_t kMaxLevels = 8;
constexpr int kMaxTransformerLayers = 64;

// Keys whose null means something (None) in diffusers 0.27.2. Every other key must not be null:
// JsonFields reads null as "missing", which would silently substitute the class default.
const char* const kNullable[] = {
    "sample_size", "mid_block_type", "cross_attention_norm", "encoder_hid_dim", "encoder_hid_dim_type",
    "num_attention_heads", "class_embed_type", "addition_embed_type", "addition_time_embed_dim",
    "num_class_embeds", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
    "projection_class_embeddings_input_dim", "mid_block_only_cross_attention",
    "reverse_transformer_layers_per_block"};

class Parser {
 public:
  Parser(const json& j, const std::string& origin) : j_(j), f_(j, origin), origin_(origin) {}

  [[noreturn]] void unsupported(const std::string& key, const std::string& supported) const {
    fail(ErrorCode::Unsupported, origin_ + ": unsupported " + key + "=" + j_.at(key).dump() + " (supported: " +
                                     supported + ")");
  }
  // The field must be absent, null, or equal to `ok` (the only value we build).
  void only(const std::string& key, const json& ok, const std::string& supported) const {
    if (!f_.has(key) || f_.is_null(key)) return;
    if (j_.at(key) != ok) unsupported(key, supported);
  }
  void only_null(const std::string& key) const {
    if (f_.has(key) && !f_.is_null(key)) unsupported(key, "null");
  }
  // int or a per-level list of ints (`n` entries); a list is returned as is, an int repeated.
  std::vector<int> int_or_list(const std::string& key, int def, int lo, int hi, size_t n) const {
    if (f_.has(key) && j_.at(key).is_array()) {
      auto v = f_.get_int_list(key, lo, hi, kMaxLevels);
      if (v.size() != n)
        f_.fail(key, "has " + std::to_string(v.size()) + " entries but there are " + std::to_string(n) +
                         " down blocks");
      return std::vector<int>(v.begin(), v.end());
    }
    if (f_.has(key) && !j_.at(key).is_number())
      f_.fail(key, "expected an integer or a list of integers, got " + j_.at(key).dump());
    return std::vector<int>(n, int(f_.get_int(key, def, lo, hi)));
  }
  // int, or a list whose entries must all be equal (we build one value).
  int uniform_int(const std::string& key, int def, int lo, int hi, size_t n) const {
    std::vector<int> v = int_or_list(key, def, lo, hi, n);
    for (int x : v)
      if (x != v[0])
        fail(ErrorCode::Unsupported, origin_ + ": unsupported " + key + "=" + j_.at(key).dump() +
                                         " (supported: one value for every level)");
    return v[0];
  }

  const json& j_;
  JsonFields f_;
  std::string origin_;
};

}  // namespace

UNet2DConditionConfig parse_unet2d_condition_config(const json& j, const std::string& origin) {
  Parser P(j, origin);
  const JsonFields& f = P.f_;
  UNet2DConditionConfig c;

  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_null() || it.key().empty() || it.key()[0] == '_') continue;
    bool nullable = false;
    for (const char* k : kNullable) nullable = nullable || it.key() == k;
    if (!nullable) f.fail(it.key(), "must not be null");
  }

  std::string cls = f.get_string("_class_name", "UNet2DConditionModel");
  if (cls != "UNet2DConditionModel")
    fail(ErrorCode::Unsupported, origin + ": unsupported _class_name=\"" + cls + "\" (supported: UNet2DConditionModel)");

  // Features we do not build: refused by name.
  P.only_null("class_embed_type");
  P.only_null("num_class_embeds");
  P.only_null("addition_embed_type");
  P.only_null("addition_time_embed_dim");
  P.only_null("projection_class_embeddings_input_dim");
  P.only_null("encoder_hid_dim");
  P.only_null("encoder_hid_dim_type");
  P.only_null("time_cond_proj_dim");
  P.only_null("time_embedding_act_fn");
  P.only_null("timestep_post_act");
  P.only_null("cross_attention_norm");
  P.only_null("reverse_transformer_layers_per_block");
  P.only("dual_cross_attention", false, "false");
  P.only("class_embeddings_concat", false, "false");
  P.only("mid_block_only_cross_attention", false, "null, false");
  P.only("conv_in_kernel", 3, "3");
  P.only("conv_out_kernel", 3, "3");
  f.get_enum("attention_type", "default", {"default"});
  f.get_enum("resnet_time_scale_shift", "default", {"default"});
  f.get_enum("time_embedding_type", "positional", {"positional"});
  f.get_enum("act_fn", "silu", {"silu", "swish"});
  f.get_bool("resnet_skip_time_act", false);  // only the Resnet*/SimpleCrossAttn blocks read it
  f.get_number("dropout", 0.0, 0.0, 1.0);     // inference: identity
  f.get_int("addition_embed_type_num_heads", 64, 1, 1 << 20);  // only used by addition embeddings
  if (f.has("conv_in_kernel")) f.get_int("conv_in_kernel", 3, 1, 15);    // type-check the accepted 3
  if (f.has("conv_out_kernel")) f.get_int("conv_out_kernel", 3, 1, 15);

  c.in_channels = int(f.get_int("in_channels", 4, 1, 64));
  c.out_channels = int(f.get_int("out_channels", 4, 1, 128));
  c.sample_size = f.get_sample_size("sample_size");
  c.center_input_sample = f.get_bool("center_input_sample", false);
  c.flip_sin_to_cos = f.get_bool("flip_sin_to_cos", true);
  c.freq_shift = f.get_number("freq_shift", 0, -1e6, 1e6);

  c.down_block_types = f.has("down_block_types") ? f.get_string_list("down_block_types", kMaxLevels)
                                                 : std::vector<std::string>{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                                            "CrossAttnDownBlock2D", "DownBlock2D"};
  c.up_block_types = f.has("up_block_types") ? f.get_string_list("up_block_types", kMaxLevels)
                                             : std::vector<std::string>{"UpBlock2D", "CrossAttnUpBlock2D",
                                                                        "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  for (auto* types : {&c.down_block_types, &c.up_block_types})
    for (auto& t : *types)
      if (t.rfind("UNetRes", 0) == 0) t = t.substr(7);  // diffusers strips this prefix too
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      fail(ErrorCode::Unsupported, origin + ": unsupported down_block_types entry \"" + t +
                                       "\" (supported: CrossAttnDownBlock2D, DownBlock2D)");
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      fail(ErrorCode::Unsupported, origin + ": unsupported up_block_types entry \"" + t +
                                       "\" (supported: CrossAttnUpBlock2D, UpBlock2D)");
  if (f.has("mid_block_type")) {
    if (f.is_null("mid_block_type")) c.has_mid_block = false;
    else f.get_enum("mid_block_type", "UNetMidBlock2DCrossAttn", {"UNetMidBlock2DCrossAttn"});
  }
  if (f.has("block_out_channels")) {
    for (long long v : f.get_int_list("block_out_channels", 1, kMaxChannels, kMaxLevels))
      c.block_out_channels.push_back(int(v));
  } else {
    c.block_out_channels = {320, 640, 1280, 1280};
  }
  const size_t n = c.block_out_channels.size();
  if (c.down_block_types.size() != n)
    f.fail("down_block_types", "has " + std::to_string(c.down_block_types.size()) +
                                   " entries but block_out_channels has " + std::to_string(n));
  if (c.up_block_types.size() != n)
    f.fail("up_block_types", "has " + std::to_string(c.up_block_types.size()) +
                                 " entries but block_out_channels has " + std::to_string(n));

  // only_cross_attention: bool or per-level list; true drops the self-attention (not built here).
  if (f.has("only_cross_attention")) {
    const json& v = j["only_cross_attention"];
    bool any = false;
    if (v.is_boolean()) {
      any = v.get<bool>();
    } else if (v.is_array() && v.size() == n) {
      for (const json& e : v) {
        if (!e.is_boolean()) f.fail("only_cross_attention", "expected true/false or a list of them, got " + v.dump());
        any = any || e.get<bool>();
      }
    } else {
      f.fail("only_cross_attention", "expected true/false or a list of " + std::to_string(n) + " of them, got " + v.dump());
    }
    if (any) P.unsupported("only_cross_attention", "false");
  }

  c.layers_per_block = P.uniform_int("layers_per_block", 2, 1, 16, n);
  c.downsample_padding = int(f.get_int("downsample_padding", 1, 0, 1));
  c.mid_block_scale_factor = f.get_number("mid_block_scale_factor", 1.0, 1e-6, 1e6);
  f.get_number("resnet_out_scale_factor", 1.0, 1e-6, 1e6);  // only the Resnet*/SimpleCrossAttn blocks read it
  c.norm_num_groups = int(f.get_int("norm_num_groups", 32, 1, kMaxChannels));
  c.norm_eps = f.get_number("norm_eps", 1e-5, 0.0, 1.0);
  if (!(c.norm_eps > 0)) f.fail("norm_eps", "must be positive");
  c.cross_attention_dim = P.uniform_int("cross_attention_dim", 1280, 1, kMaxChannels, n);
  if (f.has("transformer_layers_per_block") && j["transformer_layers_per_block"].is_array())
    for (const json& e : j["transformer_layers_per_block"])
      if (e.is_array())
        P.unsupported("transformer_layers_per_block", "an integer or one integer per level");
  c.transformer_layers = P.int_or_list("transformer_layers_per_block", 1, 1, kMaxTransformerLayers, n);
  c.use_linear_projection = f.get_bool("use_linear_projection", false);
  c.upcast_attention = f.get_bool("upcast_attention", false);
  c.time_embedding_dim = int(f.get_opt_int("time_embedding_dim", 1, kMaxChannels * 4).value_or(0));

  // Head counts: num_attention_heads or (the historical misnomer) attention_head_dim.
  const char* heads_key = f.has("num_attention_heads") && !f.is_null("num_attention_heads") ? "num_attention_heads"
                                                                                           : "attention_head_dim";
  c.heads = P.int_or_list(heads_key, 8, 1, kMaxChannels, n);

  // Structural consistency the graph relies on.
  for (size_t i = 0; i < n; ++i) {
    const int ch = c.block_out_channels[i];
    if (ch % c.norm_num_groups)
      f.fail("norm_num_groups", std::to_string(c.norm_num_groups) + " does not divide block_out_channels[" +
                                    std::to_string(i) + "]=" + std::to_string(ch));
    const bool attn = UNet2DConditionConfig::is_cross_attn(c.down_block_types[i]) ||
                      UNet2DConditionConfig::is_cross_attn(c.up_block_types[n - 1 - i]) ||
                      (i == n - 1 && c.has_mid_block);
    if (attn && ch % c.heads[i])
      f.fail(heads_key, std::to_string(c.heads[i]) + " heads do not divide block_out_channels[" + std::to_string(i) +
                            "]=" + std::to_string(ch));
  }
  return c;
}

}  // namespace diffrt
