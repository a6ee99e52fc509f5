// CLIPTextModel config and graph (contract in clip_text_builder.h). Tested by tests/clip_text_builder_test.cpp
// and, numerically, by tests/clip_text_parity_test.cpp against transformers' CLIPTextModel.
#include "weights_converter/clip_text_builder.h"

#include <cmath>

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {

using nlohmann::json;

ClipTextConfig parse_clip_text_config(const json& j, const std::string& origin) {
  JsonFields f(j, origin);
  ClipTextConfig c;
  if (f.has("architectures") && !f.is_null("architectures")) {
    const auto arch = f.get_string_list("architectures", 8);
    for (const std::string& a : arch)
      if (a != "CLIPTextModel")
        f.fail("architectures", "unsupported architecture \"" + a + "\" (supported: CLIPTextModel)");
  }
  const std::string mt = f.get_string("model_type", "clip_text_model");
  if (mt != "clip_text_model") f.fail("model_type", "expected \"clip_text_model\", got \"" + mt + "\"");
  c.vocab_size = int(f.get_int("vocab_size", c.vocab_size, 1, 1 << 20));
  c.hidden_size = int(f.get_int("hidden_size", c.hidden_size, 1, 16384));
  c.intermediate_size = int(f.get_int("intermediate_size", c.intermediate_size, 1, 1 << 17));
  c.num_hidden_layers = int(f.get_int("num_hidden_layers", c.num_hidden_layers, 1, 256));
  c.num_attention_heads = int(f.get_int("num_attention_heads", c.num_attention_heads, 1, 1024));
  c.max_position_embeddings = int(f.get_int("max_position_embeddings", c.max_position_embeddings, 1, 65536));
  c.layer_norm_eps = f.get_number("layer_norm_eps", c.layer_norm_eps, 1e-12, 0.5);
  c.hidden_act_name = f.get_enum("hidden_act", "quick_gelu", {"quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh"});
  c.hidden_act = c.hidden_act_name == "quick_gelu" ? ActivationKind::QuickGelu
                 : c.hidden_act_name == "gelu"     ? ActivationKind::Gelu
                                                   : ActivationKind::GeluTanh;
  if (c.hidden_size % c.num_attention_heads != 0)
    f.fail("num_attention_heads", std::to_string(c.num_attention_heads) + " heads do not divide hidden_size " +
                                      std::to_string(c.hidden_size));
  // diffusers passes the padding mask to the text encoder only when the config asks for it; we implement
  // the causal mask alone.
  if (f.get_bool("use_attention_mask", false))
    f.fail("use_attention_mask", "text encoders that take a padding mask are not supported");
  return c;
}

namespace {

// Builds the graph into b, recording the expected checkpoint tensors.
void build(GraphBuilder& b, const ClipTextConfig& c) {
  const int C = c.hidden_size, F = c.intermediate_size, hd = c.head_dim();
  const float eps = float(c.layer_norm_eps);
  const int ids = b.value("input_ids");
  b.graph.input_ids = ids;
  b.graph.in_channels = 1;  // one id per token
  b.graph.out_channels = C;
  b.graph.downsample_factor = 1;

  const std::string e = "text_model.embeddings";
  EmbeddingAttrs ea;
  ea.vocab = c.vocab_size; ea.dim = C; ea.max_positions = c.max_position_embeddings;
  int h = b.node(e, ea, {ids},
                 {{"token", b.copy(e + ".token_embedding.weight", {c.vocab_size, C})},
                  {"position", b.copy(e + ".position_embedding.weight", {c.max_position_embeddings, C})}});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i);
    const std::string a = p + ".self_attn";
    int x = b.layer_norm(p + ".layer_norm1", h, C, eps);
    for (const char* w : {"q_proj", "k_proj", "v_proj"}) {
      b.expect(a + "." + w + ".weight", {C, C});
      b.expect(a + "." + w + ".bias", {C});
    }
    LinearAttrs la;
    la.in = C; la.out = 3 * C;
    int qkv = b.node(a + ".qkv_proj", la, {x},
                     {{"weight", b.concat0(a + ".qkv_proj.weight", {a + ".q_proj.weight", a + ".k_proj.weight",
                                                                   a + ".v_proj.weight"}, {3 * C, C})},
                      {"bias", b.concat0(a + ".qkv_proj.bias", {a + ".q_proj.bias", a + ".k_proj.bias", a + ".v_proj.bias"},
                                         {3 * C})}});
    AttentionAttrs at;
    at.heads = c.num_attention_heads; at.head_dim = hd; at.causal = true;
    at.scale = float(1.0 / std::sqrt(double(hd)));
    int o = b.node(a + ".attention", at, {qkv});
    h = b.linear(a + ".out_proj", o, C, C, true, false, h);
    x = b.layer_norm(p + ".layer_norm2", h, C, eps);
    x = b.linear(p + ".mlp.fc1", x, C, F, true);
    ActivationAttrs act;
    act.kind = c.hidden_act;
    x = b.node(p + ".mlp.act", act, {x});
    h = b.linear(p + ".mlp.fc2", x, F, C, true, false, h);
  }
  b.set_output(b.layer_norm("text_model.final_layer_norm", h, C, eps));
}

}  // namespace

Graph build_clip_text_graph(const ClipTextConfig& cfg) { return built_graph(kTextEncoderTensorPrefix, build, cfg).graph; }

std::map<std::string, TensorShape> clip_text_expected_tensors(const ClipTextConfig& cfg) { return built_graph(kTextEncoderTensorPrefix, build, cfg).expected; }

BuiltModel build_clip_text_encoder(const ClipTextConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                                   DType dtype, bool strict, const std::string& origin) {
  GraphBuilder b = built_graph(kTextEncoderTensorPrefix, build, cfg);
  return finish_model(b, weights, dtype, strict, origin);
}

}  // namespace diffrt
