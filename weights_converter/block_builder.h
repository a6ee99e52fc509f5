// Shared graph-building blocks for the diffusers model families (UNet2DModel,
// UNet2DConditionModel, the AutoencoderKL decoder): ResnetBlock2D, spatial self-attention,
// Downsample2D/Upsample2D, GroupNorm(+SiLU), LayerNorm, conv and linear layers.
//
// A GraphBuilder emits graph nodes and records, for every checkpoint tensor a node needs, the
// shape the config implies (`expected`, by diffusers name) and how the stored tensor is made from
// checkpoint tensors (`plans`, by stored name): copied, conv weights OIHW -> KRSC [Cout,KH,KW,Cin],
// or several tensors concatenated along dim 0 (fused q/k/v projections). Stored names are the
// diffusers names with an optional prefix ("vae." for the VAE decoder in a latent-diffusion file).
// finish_model() checks a checkpoint against `expected` (missing, mis-shaped and unexpected
// tensors reported together) and converts the tensors to the target dtype.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "weights_converter/safetensors.h"

namespace diffrt {

using TensorShape = std::vector<int64_t>;
std::string shape_str(const TensorShape& s);

struct BuiltModel {
  Graph graph;
  std::vector<TensorBlob> tensors;
  std::vector<std::string> warnings;
};

// How a stored tensor is produced from checkpoint tensors.
enum class Xform { Copy, ConvKRSC, Concat0 };
struct TensorPlan {
  Xform xform = Xform::Copy;
  std::vector<std::string> sources;  // diffusers names
  TensorShape shape;                 // stored shape (Copy may reshape, e.g. [C,C,1,1] -> [C,C])
};

// ResnetBlock2D hyper-parameters (diffusers resnet.py).
struct ResnetSpec {
  int groups = 32;
  float eps = 1e-5f;
  int temb_dim = 0;          // 0: no time_emb_proj (VAE resnets)
  bool scale_shift = false;  // resnet_time_scale_shift == "scale_shift"
  float output_scale_factor = 1.0f;
};

// Spatial self-attention (diffusers Attention with residual_connection, bias on q/k/v/out).
struct SpatialAttentionSpec {
  int head_dim = 0;  // 0: one head spanning the channels
  int groups = 32;   // group_norm groups
  float eps = 1e-5f;
  bool has_norm = true;
  float output_scale_factor = 1.0f;  // rescale_output_factor (divides)
};

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string store_prefix = "") : prefix_(std::move(store_prefix)) {}

  Graph graph;
  std::map<std::string, TensorShape> expected;  // diffusers name -> shape the config implies
  std::map<std::string, TensorPlan> plans;      // stored name -> how to make it

  const std::string& prefix() const { return prefix_; }
  std::string stored(const std::string& name) const { return prefix_ + name; }

  int value(const std::string& name);
  int node(const std::string& name, OpAttrs attrs, std::vector<int> inputs,
           std::map<std::string, std::string> weights = {});
  // Renames value `v` to "out" and makes it the graph output.
  void set_output(int v);

  void expect(const std::string& name, TensorShape shape);
  // A checkpoint tensor stored as is (or reshaped to `stored_shape` when given); returns the stored name.
  std::string copy(const std::string& name, TensorShape shape, TensorShape stored_shape = {});
  // Several checkpoint tensors (already expected) concatenated along dim 0 into `stored_name`.
  std::string concat0(const std::string& stored_name, std::vector<std::string> sources, TensorShape shape);

  int conv(const std::string& p, int x, int cin, int cout, int k, int stride, int pt, int pl, int pb, int pr,
           int residual = -1, float out_scale = 1.0f);
  int conv3(const std::string& p, int x, int cin, int cout, int residual = -1, float out_scale = 1.0f) {
    return conv(p, x, cin, cout, 3, 1, 1, 1, 1, 1, residual, out_scale);
  }
  // Linear on the last dim; `bias` false: no bias tensor. `weight_shape` overrides the checkpoint
  // shape of the weight (e.g. a 1x1 conv [out,in,1,1] used as a linear layer).
  int linear(const std::string& p, int x, int in, int out, bool bias, bool silu_input = false, int residual = -1,
             float out_scale = 1.0f, TensorShape weight_shape = {});
  int group_norm(const std::string& p, int x, int ch, int groups, float eps, bool silu, int emb = -1,
                 EmbMode mode = EmbMode::None);
  int layer_norm(const std::string& p, int x, int ch, float eps);

  // diffusers ResnetBlock2D: out = (shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))) [+ temb])))) / osf
  int resnet(const std::string& p, int x, int temb, int cin, int cout, const ResnetSpec& s);
  // Spatial self-attention: [group_norm] -> fused to_qkv (with bias) -> attention -> to_out.0 + residual.
  int spatial_attention(const std::string& p, int x, int ch, const SpatialAttentionSpec& s);
  // Downsample2D (conv, stride 2). padding 0 is the TF "SAME" convention: pad right/bottom only.
  int downsample(const std::string& p, int x, int ch, int padding);
  // Upsample2D: nearest 2x then a 3x3 conv.
  int upsample(const std::string& p, int x, int ch);
  // The VAE's UNetMidBlock2D (no time embedding): resnet, [spatial attention with one head], resnet; `s`
  // gives the resnets' groups and eps, which the attention shares.
  int vae_mid_block(const std::string& p, int x, int ch, const ResnetSpec& s, bool attention);
  // The UNets' center_input_sample: 2 * x - 1.
  int center_input(int x);
  // TimestepEmbedding's linear_1 [t_dim, in_dim] and linear_2 [t_dim, t_dim] (with biases) as the weights of a
  // time_embedding node.
  std::map<std::string, std::string> time_embedding_weights(int in_dim, int t_dim);

 private:
  std::string prefix_;
};

// A GraphBuilder with store prefix `prefix` that `build` has filled from `cfg`: the first step of each model
// builder's graph, expected-tensors and conversion entry points.
template <class Config>
GraphBuilder built_graph(std::string prefix, void (*build)(GraphBuilder&, const Config&), const Config& cfg) {
  GraphBuilder b(std::move(prefix));
  build(b, cfg);
  return b;
}

// Checks `weights` against `b.expected` and converts them. Missing and mis-shaped tensors are one
// error listing all of them (InvalidModel, naming `origin`); unexpected tensors are errors too when
// `strict`, warnings otherwise. Tensors for which `ignore` returns true are skipped silently (e.g.
// a VAE's encoder). Moves b.graph into the result.
BuiltModel finish_model(GraphBuilder& b, const std::map<std::string, SafeTensor>& weights, DType dtype,
                        bool strict, const std::string& origin,
                        const std::function<bool(const std::string&)>& ignore = {});

// Total element count of the expected checkpoint tensors.
uint64_t expected_param_count(const std::map<std::string, TensorShape>& expected);

// Renames pre-0.17 attention weights (query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0) of the
// attention modules diffusers built with _from_deprecated_attn_block (names containing
// "attentions.") and squeezes [C, C, 1, 1] attention weights to [C, C], as diffusers does on load.
// Both spellings of one tensor present is an error naming `origin`.
void rename_legacy_attention(std::map<std::string, SafeTensor>& weights, const std::string& origin = "");

}  // namespace diffrt
