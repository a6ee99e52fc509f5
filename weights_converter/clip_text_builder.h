// transformers' CLIPTextModel (the text encoder of Stable Diffusion 1.x / 2.x pipelines): config parsing
// (strict, transformers 4.39 CLIPTextConfig defaults, unsupported features refused by name) and the graph
//   input_ids [N, L] -> embedding (token_embedding[ids] + position_embedding[0..L))
//   -> num_hidden_layers x pre-LayerNorm blocks:
//        h = h + out_proj(causal_attention(fused q|k|v_proj(layer_norm1(h))))   (scale head_dim^-0.5)
//        h = h + fc2(act(fc1(layer_norm2(h))))                                 (act: quick_gelu, gelu, ...)
//   -> final_layer_norm -> "out" = last_hidden_state [N, L, hidden_size]
// which is what StableDiffusionPipeline feeds the UNet (clip_skip unset). Stored tensor names are
// "text_encoder.<transformers name>"; q/k/v are stored fused as "...self_attn.qkv_proj.{weight,bias}".
// The persistent "text_model.embeddings.position_ids" buffer of older checkpoints is not needed (the graph
// uses positions 0..L-1, as transformers does) and is skipped when reading.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "kernels/activation/activation.h"
#include "weights_converter/block_builder.h"

namespace diffrt {

struct ClipTextConfig {
  int vocab_size = 49408, hidden_size = 512, intermediate_size = 2048;
  int num_hidden_layers = 12, num_attention_heads = 8, max_position_embeddings = 77;
  ActivationKind hidden_act = ActivationKind::QuickGelu;
  std::string hidden_act_name = "quick_gelu";
  double layer_norm_eps = 1e-5;

  int head_dim() const { return hidden_size / num_attention_heads; }
};

constexpr const char* kTextEncoderTensorPrefix = "text_encoder.";
constexpr const char* kClipPositionIdsTensor = "text_model.embeddings.position_ids";

// `origin` names the file in errors.
ClipTextConfig parse_clip_text_config(const nlohmann::json& j, const std::string& origin);

// `strict`: unexpected tensors are errors, else warnings.
BuiltModel build_clip_text_encoder(const ClipTextConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                                   DType dtype, bool strict, const std::string& origin);
Graph build_clip_text_graph(const ClipTextConfig& cfg);
// The checkpoint tensors (transformers names, without the "text_encoder." prefix) the graph needs.
std::map<std::string, TensorShape> clip_text_expected_tensors(const ClipTextConfig& cfg);

}  // namespace diffrt
