#include "weights_converter/unet2d_condition_builder.h"

#include <cmath>

namespace diffrt {

namespace {

constexpr float kTransformerGroupNormEps = 1e-6f;  // Transformer2DModel's GroupNorm: fixed, not norm_eps
constexpr float kLayerNormEps = 1e-5f;             // BasicTransformerBlock's LayerNorms

class CondUNetBuilder {
 public:
  CondUNetBuilder(GraphBuilder& b, const UNet2DConditionConfig& c) : b_(b), c_(c) {}

  // BasicTransformerBlock (self-attention, cross-attention, GEGLU feed-forward), residuals inside.
  int transformer_block(const std::string& p, int h, int ch, int heads) {
    const int hd = ch / heads, ctx_dim = c_.cross_attention_dim;
    AttentionAttrs aa;
    aa.heads = heads; aa.head_dim = hd; aa.scale = float(1.0 / std::sqrt(double(hd)));

    // attn1: self-attention, to_q/to_k/to_v (no bias) fused into one [3C, C] projection.
    int n1 = b_.layer_norm(p + ".norm1", h, ch, kLayerNormEps);
    const std::string a1 = p + ".attn1";
    for (const char* w : {"to_q", "to_k", "to_v"}) b_.expect(a1 + "." + w + ".weight", {ch, ch});
    LinearAttrs qkv_attrs;
    qkv_attrs.in = ch; qkv_attrs.out = 3 * ch;
    int qkv = b_.node(a1 + ".to_qkv", qkv_attrs, {n1},
                      {{"weight", b_.concat0(a1 + ".to_qkv.weight",
                                             {a1 + ".to_q.weight", a1 + ".to_k.weight", a1 + ".to_v.weight"},
                                             {3 * ch, ch})}});
    int o = b_.node(a1 + ".attention", aa, {qkv});
    h = b_.linear(a1 + ".to_out.0", o, ch, ch, true, false, h);

    // attn2: cross-attention; k/v project the text context, fused into one [2C, context_dim].
    int n2 = b_.layer_norm(p + ".norm2", h, ch, kLayerNormEps);
    const std::string a2 = p + ".attn2";
    int q = b_.linear(a2 + ".to_q", n2, ch, ch, false);
    for (const char* w : {"to_k", "to_v"}) b_.expect(a2 + "." + w + ".weight", {ch, ctx_dim});
    LinearAttrs kv_attrs;
    kv_attrs.in = ctx_dim; kv_attrs.out = 2 * ch;
    int kv = b_.node(a2 + ".to_kv", kv_attrs, {b_.graph.context},
                     {{"weight", b_.concat0(a2 + ".to_kv.weight", {a2 + ".to_k.weight", a2 + ".to_v.weight"},
                                            {2 * ch, ctx_dim})}});
    o = b_.node(a2 + ".attention", aa, {q, kv});
    h = b_.linear(a2 + ".to_out.0", o, ch, ch, true, false, h);

    // Feed-forward: GEGLU (C -> 8C, split, a * gelu(g)) then 4C -> C.
    int n3 = b_.layer_norm(p + ".norm3", h, ch, kLayerNormEps);
    int f = b_.linear(p + ".ff.net.0.proj", n3, ch, 8 * ch, true);
    f = b_.node(p + ".ff.net.0.geglu", GegluAttrs{}, {f});
    return b_.linear(p + ".ff.net.2", f, 4 * ch, ch, true, false, h);
  }

  // Transformer2DModel (continuous input) with `layers` BasicTransformerBlocks and a residual.
  int transformer(const std::string& p, int x, int ch, int heads, int layers) {
    int h = b_.group_norm(p + ".norm", x, ch, c_.norm_num_groups, kTransformerGroupNormEps, false);
    // proj_in/proj_out: 1x1 conv [C,C,1,1] or Linear [C,C]; on NHWC both are a linear layer.
    const TensorShape proj = c_.use_linear_projection ? TensorShape{ch, ch} : TensorShape{ch, ch, 1, 1};
    h = b_.linear(p + ".proj_in", h, ch, ch, true, false, -1, 1.0f, proj);
    for (int k = 0; k < layers; ++k) h = transformer_block(p + ".transformer_blocks." + std::to_string(k), h, ch, heads);
    return b_.linear(p + ".proj_out", h, ch, ch, true, false, x, 1.0f, proj);
  }

  void build() {
    Graph& g = b_.graph;
    const auto& boc = c_.block_out_channels;
    const int n = c_.levels(), L = c_.layers_per_block, T = c_.temb_dim();
    g.sample = b_.value("sample");
    g.timestep = b_.value("timestep");
    g.context = b_.value("encoder_hidden_states");
    g.context_dim = c_.cross_attention_dim;
    g.in_channels = c_.in_channels;
    g.out_channels = c_.out_channels;
    g.downsample_factor = 1 << (n - 1);

    int x = c_.center_input_sample ? b_.center_input(g.sample) : g.sample;
    TimeEmbeddingAttrs ta{boc[0], T, 0, c_.flip_sin_to_cos, float(c_.freq_shift)};  // {dim, out_dim, num_classes, ...}
    int temb = b_.node("time_embedding", ta, {g.timestep}, b_.time_embedding_weights(boc[0], T));

    ResnetSpec rs;
    rs.groups = c_.norm_num_groups; rs.eps = float(c_.norm_eps); rs.temb_dim = T;

    int h = b_.conv3("conv_in", x, c_.in_channels, boc[0]);
    std::vector<std::pair<int, int>> skips{{h, boc[0]}};
    int ch = boc[0];
    for (int i = 0; i < n; ++i) {
      const std::string p = "down_blocks." + std::to_string(i);
      const bool attn = UNet2DConditionConfig::is_cross_attn(c_.down_block_types[i]);
      for (int j = 0; j < L; ++j) {
        h = b_.resnet(p + ".resnets." + std::to_string(j), h, temb, ch, boc[i], rs);
        ch = boc[i];
        if (attn) h = transformer(p + ".attentions." + std::to_string(j), h, ch, c_.heads[i], c_.transformer_layers[i]);
        skips.push_back({h, ch});
      }
      if (i < n - 1) {
        h = b_.downsample(p + ".downsamplers.0", h, ch, c_.downsample_padding);
        skips.push_back({h, ch});
      }
    }
    if (c_.has_mid_block) {
      ResnetSpec mrs = rs;
      mrs.output_scale_factor = float(c_.mid_block_scale_factor);
      h = b_.resnet("mid_block.resnets.0", h, temb, ch, ch, mrs);
      h = transformer("mid_block.attentions.0", h, ch, c_.heads[n - 1], c_.transformer_layers[n - 1]);
      h = b_.resnet("mid_block.resnets.1", h, temb, ch, ch, mrs);
    }
    for (int i = 0; i < n; ++i) {
      const std::string p = "up_blocks." + std::to_string(i);
      const int level = n - 1 - i, out = boc[level];
      const bool attn = UNet2DConditionConfig::is_cross_attn(c_.up_block_types[i]);
      for (int j = 0; j <= L; ++j) {
        auto [s, sch] = skips.back();
        skips.pop_back();
        const std::string r = p + ".resnets." + std::to_string(j);
        int cat = b_.node(r + ".concat", ConcatAttrs{}, {h, s});
        h = b_.resnet(r, cat, temb, ch + sch, out, rs);
        ch = out;
        if (attn)
          h = transformer(p + ".attentions." + std::to_string(j), h, ch, c_.heads[level], c_.transformer_layers[level]);
      }
      if (i < n - 1) h = b_.upsample(p + ".upsamplers.0", h, ch);
    }
    h = b_.group_norm("conv_norm_out", h, boc[0], c_.norm_num_groups, float(c_.norm_eps), true);
    h = b_.conv3("conv_out", h, boc[0], c_.out_channels);
    b_.set_output(h);
  }

 private:
  GraphBuilder& b_;
  const UNet2DConditionConfig& c_;
};

}  // namespace

Graph build_unet2d_condition_graph(const UNet2DConditionConfig& cfg) {
  GraphBuilder b;
  CondUNetBuilder(b, cfg).build();
  return b.graph;
}

std::map<std::string, TensorShape> unet2d_condition_expected_tensors(const UNet2DConditionConfig& cfg) {
  GraphBuilder b;
  CondUNetBuilder(b, cfg).build();
  return b.expected;
}

BuiltModel build_unet2d_condition(const UNet2DConditionConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                                  DType dtype, bool strict, const std::string& origin) {
  GraphBuilder b;
  CondUNetBuilder(b, cfg).build();
  return finish_model(b, weights, dtype, strict, origin);
}

}  // namespace diffrt
