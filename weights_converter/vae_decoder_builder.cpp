#include "weights_converter/vae_decoder_builder.h"

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {

namespace {

using nlohmann::json;

constexpr int kMaxChannels = 16384;
constexpr size_t kMaxLevels = 8;
constexpr float kDecoderEps = 1e-6f;  // every decoder GroupNorm (resnets, attention, conv_norm_out)

void build(GraphBuilder& b, const AutoencoderKLConfig& c) {
  Graph& g = b.graph;
  const auto& boc = c.block_out_channels;
  const int n = c.levels(), G = c.norm_num_groups, top = boc[n - 1];
  g.sample = b.value("sample");
  g.in_channels = c.latent_channels;
  g.out_channels = c.out_channels;
  g.downsample_factor = 1;

  // diffusers' pipeline divides the latents by scaling_factor before vae.decode().
  AffineAttrs unscale;
  unscale.scale = float(1.0 / c.scaling_factor);
  int h = b.node("unscale_latents", unscale, {g.sample});
  if (c.use_post_quant_conv)
    h = b.conv("post_quant_conv", h, c.latent_channels, c.latent_channels, 1, 1, 0, 0, 0, 0);
  h = b.conv3("decoder.conv_in", h, c.latent_channels, top);

  ResnetSpec rs;
  rs.groups = G; rs.eps = kDecoderEps; rs.temb_dim = 0;
  h = b.vae_mid_block("decoder.mid_block", h, top, rs, c.mid_block_add_attention);

  int ch = top;
  for (int i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    const int out = boc[n - 1 - i];
    for (int j = 0; j <= c.layers_per_block; ++j) {
      h = b.resnet(p + ".resnets." + std::to_string(j), h, -1, ch, out, rs);
      ch = out;
    }
    if (i < n - 1) h = b.upsample(p + ".upsamplers.0", h, ch);
  }
  h = b.group_norm("decoder.conv_norm_out", h, boc[0], G, kDecoderEps, true);
  h = b.conv3("decoder.conv_out", h, boc[0], c.out_channels);
  b.set_output(h);
}

}  // namespace

AutoencoderKLConfig parse_autoencoder_kl_config(const json& j, const std::string& origin) {
  JsonFields f(j, origin);
  AutoencoderKLConfig c;
  auto unsupported = [&](const std::string& key, const std::string& supported) {
    fail(ErrorCode::Unsupported, origin + ": unsupported " + key + "=" + j.at(key).dump() + " (supported: " +
                                     supported + ")");
  };
  // Null means None only where diffusers gives it a meaning; elsewhere it would silently become
  // the default, so it is refused.
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (it.value().is_null() && !k.empty() && k[0] != '_' && k != "latents_mean" && k != "latents_std" &&
        k != "shift_factor" && k != "sample_size")
      f.fail(k, "must not be null");
  }
  std::string cls = f.get_string("_class_name", "AutoencoderKL");
  if (cls != "AutoencoderKL")
    fail(ErrorCode::Unsupported, origin + ": unsupported _class_name=\"" + cls + "\" (supported: AutoencoderKL)");
  // Latent statistics used by other pipelines (SDXL-style normalisation, SD3/Flux shift): not built.
  for (const char* k : {"latents_mean", "latents_std", "shift_factor"})
    if (f.has(k) && !f.is_null(k)) unsupported(k, "null");
  f.get_enum("act_fn", "silu", {"silu", "swish"});

  c.in_channels = int(f.get_int("in_channels", 3, 1, 64));
  c.out_channels = int(f.get_int("out_channels", 3, 1, 64));
  c.latent_channels = int(f.get_int("latent_channels", 4, 1, 64));
  if (f.has("block_out_channels")) {
    for (long long v : f.get_int_list("block_out_channels", 1, kMaxChannels, kMaxLevels))
      c.block_out_channels.push_back(int(v));
  } else {
    c.block_out_channels = {64};
  }
  const size_t n = c.block_out_channels.size();
  // The encoder's blocks (built by vae_encoder_builder.cpp, which refuses other block types by name).
  c.down_block_types = f.has("down_block_types") ? f.get_string_list("down_block_types", kMaxLevels)
                                                 : std::vector<std::string>{"DownEncoderBlock2D"};
  const std::vector<std::string>& down = c.down_block_types;
  if (down.size() != n)
    f.fail("down_block_types", "has " + std::to_string(down.size()) + " entries but block_out_channels has " +
                                   std::to_string(n));
  c.up_block_types = f.has("up_block_types") ? f.get_string_list("up_block_types", kMaxLevels)
                                             : std::vector<std::string>{"UpDecoderBlock2D"};
  for (const auto& t : c.up_block_types)
    if (t != "UpDecoderBlock2D")
      fail(ErrorCode::Unsupported, origin + ": unsupported up_block_types entry \"" + t +
                                       "\" (supported: UpDecoderBlock2D)");
  if (c.up_block_types.size() != n)
    f.fail("up_block_types", "has " + std::to_string(c.up_block_types.size()) + " entries but block_out_channels has " +
                                 std::to_string(n));
  c.layers_per_block = int(f.get_int("layers_per_block", 1, 1, 16));
  c.norm_num_groups = int(f.get_int("norm_num_groups", 32, 1, kMaxChannels));
  if (f.has("sample_size") && !f.is_null("sample_size")) {
    if (j["sample_size"].is_array()) {
      auto s = f.get_int_list("sample_size", 1, 1 << 16, 2);
      if (s.size() != 2 || s[0] != s[1]) f.fail("sample_size", "only square sample sizes are supported");
      c.sample_size = int(s[0]);
    } else {
      c.sample_size = int(f.get_int("sample_size", 32, 1, 1 << 16));
    }
  }
  c.scaling_factor = f.get_number("scaling_factor", 0.18215, 1e-6, 1e6);
  c.force_upcast = f.get_bool("force_upcast", true);
  c.use_quant_conv = f.get_bool("use_quant_conv", true);  // encoder side
  c.use_post_quant_conv = f.get_bool("use_post_quant_conv", true);
  c.mid_block_add_attention = f.get_bool("mid_block_add_attention", true);

  for (size_t i = 0; i < n; ++i)
    if (c.block_out_channels[i] % c.norm_num_groups)
      f.fail("norm_num_groups", std::to_string(c.norm_num_groups) + " does not divide block_out_channels[" +
                                    std::to_string(i) + "]=" + std::to_string(c.block_out_channels[i]));
  return c;
}

Graph build_vae_decoder_graph(const AutoencoderKLConfig& cfg) { return built_graph(kVaeTensorPrefix, build, cfg).graph; }

std::map<std::string, TensorShape> vae_decoder_expected_tensors(const AutoencoderKLConfig& cfg) { return built_graph(kVaeTensorPrefix, build, cfg).expected; }

BuiltModel build_vae_decoder(const AutoencoderKLConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                             DType dtype, bool strict, const std::string& origin) {
  GraphBuilder b = built_graph(kVaeTensorPrefix, build, cfg);
  auto encoder_side = [](const std::string& name) {
    return name.rfind("encoder.", 0) == 0 || name.rfind("quant_conv.", 0) == 0;
  };
  return finish_model(b, weights, dtype, strict, origin, encoder_side);
}

}  // namespace diffrt
