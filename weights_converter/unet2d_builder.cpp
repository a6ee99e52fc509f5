#include "weights_converter/unet2d_builder.h"

namespace diffrt {

namespace {

// diffusers UNet2DModel forward (spec section 6.2) as graph nodes.
void build(GraphBuilder& b, const UNet2DConfig& c) {
  Graph& graph = b.graph;
  const auto& boc = c.block_out_channels;
  const int n = int(boc.size()), L = c.layers_per_block, G = c.norm_num_groups, T = c.temb_dim();
  const float eps = float(c.norm_eps);
  graph.sample = b.value("sample");
  graph.timestep = b.value("timestep");
  if (c.num_class_embeds) graph.class_labels = b.value("class_labels");
  graph.in_channels = c.in_channels;
  graph.out_channels = c.out_channels;
  graph.downsample_factor = 1 << (n - 1);

  int x = c.center_input_sample ? b.center_input(graph.sample) : graph.sample;
  // {dim, out_dim, num_classes, flip, freq_shift}
  TimeEmbeddingAttrs ta{boc[0], T, c.num_class_embeds, c.flip_sin_to_cos, float(c.freq_shift)};
  std::map<std::string, std::string> tw = b.time_embedding_weights(boc[0], T);
  std::vector<int> tin{graph.timestep};
  if (c.num_class_embeds) {
    tw["class_table"] = b.copy("class_embedding.weight", {c.num_class_embeds, T});
    tin.push_back(graph.class_labels);
  }
  int temb = b.node("time_embedding", ta, tin, tw);

  ResnetSpec rs;
  rs.groups = G; rs.eps = eps; rs.temb_dim = T; rs.scale_shift = c.scale_shift;
  SpatialAttentionSpec as;
  as.head_dim = c.attention_head_dim; as.groups = G; as.eps = eps;

  int h = b.conv3("conv_in", x, c.in_channels, boc[0]);
  std::vector<std::pair<int, int>> skips{{h, boc[0]}};
  int ch = boc[0];
  for (int i = 0; i < n; ++i) {
    std::string p = "down_blocks." + std::to_string(i);
    bool attn = c.down_block_types[i] == "AttnDownBlock2D";
    for (int j = 0; j < L; ++j) {
      h = b.resnet(p + ".resnets." + std::to_string(j), h, temb, ch, boc[i], rs);
      ch = boc[i];
      if (attn) h = b.spatial_attention(p + ".attentions." + std::to_string(j), h, ch, as);
      skips.push_back({h, ch});
    }
    if (i < n - 1) {
      h = b.downsample(p + ".downsamplers.0", h, ch, c.downsample_padding);
      skips.push_back({h, ch});
    }
  }
  if (c.has_mid_block) {
    const float osf = float(c.mid_block_scale_factor);
    ResnetSpec mrs = rs;
    mrs.output_scale_factor = osf;
    h = b.resnet("mid_block.resnets.0", h, temb, ch, ch, mrs);
    if (c.add_attention) {
      SpatialAttentionSpec mas = as;
      const int ag = c.attn_norm_num_groups;
      mas.groups = ag ? ag : G;
      mas.has_norm = ag || !c.scale_shift;
      mas.output_scale_factor = osf;
      h = b.spatial_attention("mid_block.attentions.0", h, ch, mas);
    }
    h = b.resnet("mid_block.resnets.1", h, temb, ch, ch, mrs);
  }
  for (int i = 0; i < n; ++i) {
    std::string p = "up_blocks." + std::to_string(i);
    int out = boc[n - 1 - i];
    bool attn = c.up_block_types[i] == "AttnUpBlock2D";
    for (int j = 0; j <= L; ++j) {
      auto [s, sch] = skips.back();
      skips.pop_back();
      std::string r = p + ".resnets." + std::to_string(j);
      int cat = b.node(r + ".concat", ConcatAttrs{}, {h, s});
      h = b.resnet(r, cat, temb, ch + sch, out, rs);
      ch = out;
      if (attn) h = b.spatial_attention(p + ".attentions." + std::to_string(j), h, ch, as);
    }
    if (i < n - 1) h = b.upsample(p + ".upsamplers.0", h, ch);
  }
  h = b.group_norm("conv_norm_out", h, boc[0], G, eps, true);
  h = b.conv3("conv_out", h, boc[0], c.out_channels);
  b.set_output(h);
}

}  // namespace

Graph build_unet2d_graph(const UNet2DConfig& cfg) {
  GraphBuilder b;
  build(b, cfg);
  return b.graph;
}

std::map<std::string, TensorShape> unet2d_expected_tensors(const UNet2DConfig& cfg) {
  GraphBuilder b;
  build(b, cfg);
  return b.expected;
}

BuiltModel build_unet2d(const UNet2DConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                        DType dtype, bool strict, const std::string& origin) {
  GraphBuilder b;
  build(b, cfg);
  return finish_model(b, weights, dtype, strict, origin);
}

}  // namespace diffrt
