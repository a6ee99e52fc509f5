// Strict Transformer2DModel (DiT) config parsing (contract in dit_config.h). Tested by tests/dit_converter_test.cpp.
#include "weights_converter/dit_config.h"

#include <algorithm>

#include "base/error.h"
#include "base/json_fields.h"

namespace diffrt {

namespace {

using nlohmann::json;

// Keys whose null means something (None) in diffusers 0.27.2; every other key must not be null (JsonFields reads
// null as "missing", which would silently substitute the class default).
const char* const kNullable[] = {"in_channels", "out_channels", "cross_attention_dim", "sample_size",
                                 "num_vector_embeds", "patch_size", "num_embeds_ada_norm", "caption_channels",
                                 "interpolation_scale"};

[[noreturn]] void unsupported(const std::string& origin, const std::string& key, const json& v,
                              const std::string& supported) {
  fail(ErrorCode::Unsupported, origin + ": unsupported " + key + "=" + v.dump() + " (supported: " + supported + ")");
}

}  // namespace

bool is_patched_transformer_config(const json& j) {
  auto set = [&](const char* k) { return j.is_object() && j.contains(k) && !j[k].is_null(); };
  return set("in_channels") && set("patch_size");
}

DiTConfig parse_dit_config(const json& j, const std::string& origin) {
  const JsonFields f(j, origin);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_null() || it.key().empty() || it.key()[0] == '_') continue;
    const bool nullable = std::any_of(std::begin(kNullable), std::end(kNullable), [&](const char* k) { return it.key() == k; });
    if (!nullable) f.fail(it.key(), "must not be null");
  }
  const std::string cls = f.get_string("_class_name", "Transformer2DModel");
  if (cls != "Transformer2DModel")
    fail(ErrorCode::Unsupported, origin + ": unsupported _class_name=\"" + cls + "\" (supported: Transformer2DModel)");

  auto only_null = [&](const char* key) {
    if (f.has(key) && !f.is_null(key)) unsupported(origin, key, j.at(key), "null");
  };
  // Other input kinds and features of Transformer2DModel that a DiT does not have.
  if (!f.has("patch_size") || f.is_null("patch_size"))
    f.fail("patch_size", "missing: only patched (DiT) Transformer2DModels are supported");
  if (!f.has("in_channels") || f.is_null("in_channels")) f.fail("in_channels", "missing (a patched model needs it)");
  if (!f.has("sample_size") || f.is_null("sample_size"))
    f.fail("sample_size", "missing (diffusers asserts it for patched input)");
  only_null("num_vector_embeds");
  only_null("cross_attention_dim");
  only_null("caption_channels");
  if (f.get_bool("only_cross_attention", false)) unsupported(origin, "only_cross_attention", true, "false");
  if (f.get_bool("double_self_attention", false)) unsupported(origin, "double_self_attention", true, "false");
  f.get_enum("attention_type", "default", {"default"});
  const std::string norm_type = f.get_string("norm_type", "layer_norm");
  if (norm_type != "ada_norm_zero")
    unsupported(origin, "norm_type", norm_type,
                "ada_norm_zero (DiT); ada_norm_single is PixArt, ada_norm / layer_norm have no patched forward");
  f.get_number("dropout", 0.0, 0.0, 1.0);              // inference: identity
  f.get_int("norm_num_groups", 32, 1, 1 << 20);        // unused by the patched path
  f.get_bool("use_linear_projection", false);          // unused by the patched path

  DiTConfig c;
  c.heads = int(f.get_int("num_attention_heads", 16, 1, 4096));
  c.head_dim = int(f.get_int("attention_head_dim", 88, 1, 4096));
  if (c.head_dim > 512) unsupported(origin, "attention_head_dim", j.at("attention_head_dim"), "1..512");
  if (int64_t(c.heads) * c.head_dim > 16384)
    f.fail("num_attention_heads", "num_attention_heads * attention_head_dim = " +
                                      std::to_string(int64_t(c.heads) * c.head_dim) + " above 16384");
  if (c.dim() % 4 != 0)
    f.fail("attention_head_dim", "inner dim " + std::to_string(c.heads) + " * " + std::to_string(c.head_dim) + " = " +
                                     std::to_string(c.dim()) +
                                     " is not divisible by 4 (the 2-D sin-cos position table needs it)");
  c.in_channels = int(f.get_int("in_channels", 0, 1, 64));
  c.out_channels = f.is_null("out_channels") ? c.in_channels : int(f.get_int("out_channels", c.in_channels, 1, 128));
  if (c.out_channels != c.in_channels && c.out_channels != 2 * c.in_channels)
    unsupported(origin, "out_channels", j.at("out_channels"),
                "in_channels (epsilon) or 2 * in_channels (epsilon + learned sigma): " + std::to_string(c.in_channels) +
                    " or " + std::to_string(2 * c.in_channels));
  c.num_layers = int(f.get_int("num_layers", 1, 1, 256));
  c.patch_size = int(f.get_int("patch_size", 0, 1, 64));
  if (j.at("sample_size").is_array()) unsupported(origin, "sample_size", j.at("sample_size"), "an integer");
  c.sample_size = int(f.get_int("sample_size", 0, 1, 8192));
  if (c.sample_size % c.patch_size != 0)
    unsupported(origin, "sample_size", j.at("sample_size"),
                "a multiple of patch_size " + std::to_string(c.patch_size));
  if (!f.has("num_embeds_ada_norm") || f.is_null("num_embeds_ada_norm"))
    f.fail("num_embeds_ada_norm", "missing (ada_norm_zero needs the number of classes)");
  c.num_embeds_ada_norm = int(f.get_int("num_embeds_ada_norm", 0, 1, (1 << 20) - 2));
  const std::string act = f.get_string("activation_fn", "geglu");
  if (act == "gelu-approximate") c.activation = DiTActivation::GeluTanh;
  else if (act == "gelu") c.activation = DiTActivation::Gelu;
  else if (act == "geglu") c.activation = DiTActivation::Geglu;
  else unsupported(origin, "activation_fn", act, "gelu-approximate, gelu, geglu");
  c.attention_bias = f.get_bool("attention_bias", false);
  c.norm_elementwise_affine = f.get_bool("norm_elementwise_affine", true);
  const double eps = f.get_number("norm_eps", 1e-5, 0.0, 1.0);
  if (!(eps > 0.0 && eps < 1.0)) f.fail("norm_eps", "must be in (0, 1)");
  c.norm_eps = float(eps);
  c.upcast_attention = f.get_bool("upcast_attention", false);
  if (f.has("interpolation_scale") && !f.is_null("interpolation_scale")) {
    const double s = f.get_number("interpolation_scale", 1.0, 0.0, 1e6);
    if (!(s > 0.0)) f.fail("interpolation_scale", "must be > 0");
    c.interpolation_scale = float(s);
  } else {
    c.interpolation_scale = float(std::max(c.sample_size / 64, 1));
  }
  return c;
}

}  // namespace diffrt
