#include "weights_converter/vae_encoder_builder.h"

#include "base/error.h"

namespace diffrt {

namespace {

constexpr float kEncoderEps = 1e-6f;  // every encoder GroupNorm (resnets, attention, conv_norm_out)

bool encoder_side(const std::string& name) {
  return name.rfind("encoder.", 0) == 0 || name.rfind("quant_conv.", 0) == 0;
}

void build(GraphBuilder& b, const AutoencoderKLConfig& c) {
  for (const auto& t : c.down_block_types)
    if (t != "DownEncoderBlock2D")
      fail(ErrorCode::Unsupported, "VAE encoder: unsupported down_block_types entry \"" + t +
                                       "\" (supported: DownEncoderBlock2D)");
  Graph& g = b.graph;
  const auto& boc = c.block_out_channels;
  const int n = c.levels(), G = c.norm_num_groups, top = boc[n - 1], L2 = 2 * c.latent_channels;
  g.sample = b.value("sample");
  g.in_channels = c.in_channels;
  g.out_channels = L2;
  g.downsample_factor = 1;  // odd sizes floor at each Downsample2D, as in diffusers

  int h = b.conv3("encoder.conv_in", g.sample, c.in_channels, boc[0]);
  ResnetSpec rs;
  rs.groups = G; rs.eps = kEncoderEps; rs.temb_dim = 0;
  int ch = boc[0];
  for (int i = 0; i < n; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    for (int j = 0; j < c.layers_per_block; ++j) {
      h = b.resnet(p + ".resnets." + std::to_string(j), h, -1, ch, boc[i], rs);
      ch = boc[i];
    }
    // Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding.
    if (i < n - 1) h = b.downsample(p + ".downsamplers.0", h, ch, 0);
  }
  h = b.vae_mid_block("encoder.mid_block", h, top, rs, c.mid_block_add_attention);
  h = b.group_norm("encoder.conv_norm_out", h, top, G, kEncoderEps, true);
  h = b.conv3("encoder.conv_out", h, top, L2);
  if (c.use_quant_conv) h = b.conv("quant_conv", h, L2, L2, 1, 1, 0, 0, 0, 0);
  b.set_output(h);
}

}  // namespace

bool has_vae_encoder_weights(const std::map<std::string, SafeTensor>& weights) {
  auto it = weights.lower_bound("encoder.");
  return it != weights.end() && it->first.rfind("encoder.", 0) == 0;
}

Graph build_vae_encoder_graph(const AutoencoderKLConfig& cfg) { return built_graph(kVaeTensorPrefix, build, cfg).graph; }

std::map<std::string, TensorShape> vae_encoder_expected_tensors(const AutoencoderKLConfig& cfg) { return built_graph(kVaeTensorPrefix, build, cfg).expected; }

BuiltModel build_vae_encoder(const AutoencoderKLConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                             DType dtype, bool strict, const std::string& origin) {
  GraphBuilder b = built_graph(kVaeTensorPrefix, build, cfg);
  // The decoder side (decoder.*, post_quant_conv.*, and anything else the decoder builder reports) is not ours.
  return finish_model(b, weights, dtype, strict, origin, [](const std::string& name) { return !encoder_side(name); });
}

}  // namespace diffrt
