// Graph helpers: value lookup by name and the op name of each attribute alternative (the op name
// is the stem of the op's kernel, reference, tests and benchmark; the model file stores it).
#include "model/graph.h"

#include <type_traits>

namespace diffrt {

namespace {
struct OpNameOf {
  const char* operator()(const TimeEmbeddingAttrs&) const { return "time_embedding"; }
  const char* operator()(const Conv2dAttrs&) const { return "conv2d"; }
  const char* operator()(const LinearAttrs&) const { return "linear"; }
  const char* operator()(const GroupNormAttrs&) const { return "group_norm"; }
  const char* operator()(const AttentionAttrs&) const { return "attention"; }
  const char* operator()(const ConcatAttrs&) const { return "concat"; }
  const char* operator()(const Upsample2xAttrs&) const { return "upsample2x"; }
  const char* operator()(const AffineAttrs&) const { return "affine"; }
  const char* operator()(const LayerNormAttrs&) const { return "layer_norm"; }
  const char* operator()(const GegluAttrs&) const { return "geglu"; }
  const char* operator()(const EmbeddingAttrs&) const { return "embedding"; }
  const char* operator()(const ActivationAttrs&) const { return "activation"; }
  const char* operator()(const PatchEmbedAttrs&) const { return "patch_embed"; }
  const char* operator()(const UnpatchifyAttrs&) const { return "unpatchify"; }
};
}  // namespace

const char* op_name(const OpAttrs& a) { return std::visit(OpNameOf{}, a); }

int Graph::value_id(const std::string& name) const {
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i] == name) return static_cast<int>(i);
  return -1;
}

}  // namespace diffrt
