// The diffusers Transformer2DModel config of a DiT (patched input, norm_type "ada_norm_zero"), parsed strictly:
// diffusers 0.27.2 defaults for absent keys, every present key type- and range-checked, features diffrt does not
// build refused by name (Error Unsupported naming the file and field), inconsistent values refused
// (InvalidModel naming the file and field). Semantics: tests/fixtures/dit/README.md.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace diffrt {

enum class DiTActivation { GeluTanh, Gelu, Geglu };  // "gelu-approximate", "gelu", "geglu"

struct DiTConfig {
  int heads = 16, head_dim = 88;   // num_attention_heads, attention_head_dim
  int in_channels = 0;             // latent channels C
  int out_channels = 0;            // C (epsilon) or 2C (epsilon + learned sigma); null in the config -> C
  int num_layers = 1;
  int sample_size = 0;             // latent side the model was built for
  int patch_size = 0;
  int num_embeds_ada_norm = 0;     // classes; the label table has num_embeds_ada_norm + 1 rows (null class last)
  DiTActivation activation = DiTActivation::Geglu;
  bool attention_bias = false;     // bias of to_q/to_k/to_v (to_out.0 always has one)
  bool norm_elementwise_affine = true;  // norm3 has weight and bias (norm1/norm_out never do)
  float norm_eps = 1e-5f;          // norm3's eps (norm1 and norm_out use 1e-6)
  float interpolation_scale = 1;   // config value, or max(sample_size // 64, 1) when null
  bool upcast_attention = false;   // fp16 score upcast in diffusers; diffrt always accumulates in fp32

  int dim() const { return heads * head_dim; }
  int base_size() const { return sample_size / patch_size; }
  int label_rows() const { return num_embeds_ada_norm + 1; }
  int ff_inner() const { return 4 * dim(); }
};

// `origin` names the file in errors.
DiTConfig parse_dit_config(const nlohmann::json& j, const std::string& origin);

// True when a Transformer2DModel config describes a patched (DiT-style) model: in_channels and patch_size set.
bool is_patched_transformer_config(const nlohmann::json& j);

}  // namespace diffrt
