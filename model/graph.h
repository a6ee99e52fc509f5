// The typed op graph. The converter builds it from a diffusers config; the model file stores it as
// JSON; the runtime infers shapes, plans memory and executes it on a backend. Ops carry typed
// attribute structs (std::variant), weights are referenced by tensor name.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "base/dtype.h"
#include "kernels/activation/activation.h"
#include "kernels/group_norm/group_norm.h"

namespace diffrt {

struct TimeEmbeddingAttrs {  // inputs: [timestep] or [timestep, class_labels]; out [N, T]
  int dim = 0, out_dim = 0, num_classes = 0;
  bool flip = false;
  float freq_shift = 0.0f;
};
struct Conv2dAttrs {  // inputs: [x] or [x, residual]; weights: weight [Cout,KH,KW,Cin], bias
  int cin = 0, cout = 0, kh = 3, kw = 3, stride = 1;
  int pad_top = 1, pad_left = 1, pad_bottom = 1, pad_right = 1;
  float out_scale = 1.0f;
};
// inputs: [x], [x, residual] or, gated (gate_offset >= 0), [x, residual, gate_src]; acts on the last dim;
// weights: weight [out,in], bias. Gated: y = residual + gate_src[s, gate_offset + j] * (x W^T + b)[.., j] with s
// the sample (leading dim) of the row: the adaLN-Zero gated residual of DiT blocks; gate_src is [N, M].
struct LinearAttrs {
  int in = 0, out = 0;
  bool silu_input = false;
  float out_scale = 1.0f;
  int gate_offset = -1;  // -1: not gated
};
struct GroupNormAttrs {  // inputs: [x] or [x, emb]; weights: weight, bias
  int groups = 32;
  float eps = 1e-5f;
  bool silu = false;
  EmbMode emb_mode = EmbMode::None;
};
// Self-attention: inputs [qkv] with channels [q | k | v] (keys are the query's own tokens).
// Cross-attention: inputs [q, kv]; q [N, Lq, C], kv [N, Lkv, 2C] with channels [k | v] (e.g. the text
// context projected by to_k/to_v fused into one linear). Out: q's shape with C = heads*head_dim.
// causal (self-attention only): key j is masked for query i when j > i (CLIP's text encoder).
struct AttentionAttrs {
  int heads = 1, head_dim = 0;
  float scale = 1.0f;
  bool causal = false;
};
struct ConcatAttrs {};      // inputs: [a, b] -> channels a then b
struct Upsample2xAttrs {};  // inputs: [x]
struct AffineAttrs {        // inputs: [x]; y = x * scale + shift
  float scale = 1.0f, shift = 0.0f;
};
// inputs: [x] or, modulated (shift_offset >= 0), [x, mod]; normalises the last dim C (biased variance);
// weights: weight, bias (optional: elementwise_affine=False). Modulated (adaLN):
// y = LN(x) * (1 + mod[s, scale_offset + c]) + mod[s, shift_offset + c], s the sample of the row, mod [N, M].
struct LayerNormAttrs {
  float eps = 1e-5f;
  int shift_offset = -1, scale_offset = -1;  // -1: not modulated (both set or neither)
};
// Patch embedding of DiT (diffusers PatchEmbed, layer_norm=False): inputs [x [N,H,W,cin]] -> [N, H/p, W/p, dim]
// = conv(k=p, s=p)(x) + bias (+ the fixed 2-D sin-cos position table when pos_embed; see
// kernels/patch_embed/patch_embed.h). weights: weight [dim, p, p, cin] (KRSC), bias [dim].
struct PatchEmbedAttrs {
  int patch = 2, cin = 0, dim = 0;
  bool pos_embed = true;
  int base_size = 1;                  // config sample_size / patch
  float interpolation_scale = 1.0f;
};
// Unpatchify (DiT's final reshape): inputs [x [N, gh, gw, p*p*C]] -> [N, gh*p, gw*p, C] with
// y[n, i*p+u, j*p+v, c] = x[n, i, j, (u*p+v)*C + c].
struct UnpatchifyAttrs {
  int patch = 2, channels = 0;
};
struct GegluAttrs {};  // inputs: [x] with last dim 2F -> [.., F]: x[:F] * gelu_erf(x[F:]) (diffusers GEGLU)
// inputs: [input_ids [N, L] int32]; weights: token [vocab, dim], position [max_positions, dim] ->
// [N, L, dim] = token[ids] + position[0..L) (CLIP's text embeddings).
struct EmbeddingAttrs {
  int vocab = 0, dim = 0, max_positions = 0;
};
struct ActivationAttrs {  // inputs: [x]; elementwise gelu / gelu_tanh / quick_gelu
  ActivationKind kind = ActivationKind::Gelu;
};

using OpAttrs = std::variant<TimeEmbeddingAttrs, Conv2dAttrs, LinearAttrs, GroupNormAttrs,
                             AttentionAttrs, ConcatAttrs, Upsample2xAttrs, AffineAttrs, LayerNormAttrs,
                             GegluAttrs, EmbeddingAttrs, ActivationAttrs, PatchEmbedAttrs, UnpatchifyAttrs>;

// The op name is the variant alternative's stem: "time_embedding", "conv2d", ...
const char* op_name(const OpAttrs& a);

struct Node {
  std::string name;                           // e.g. "down_blocks.1.resnets.0.conv1"
  OpAttrs attrs;
  std::vector<int> inputs;                    // value ids
  int output = -1;                            // value id
  std::map<std::string, std::string> weights; // role ("weight", "bias", ...) -> tensor name
};

// Graph inputs are values "sample" [N,H,W,Cin] and optionally "timestep" [N] (every denoiser has
// one; a VAE decoder has none), "class_labels" [N] and "encoder_hidden_states" [N,L,context_dim]
// (text context for cross-attention; L is chosen per run). A text encoder instead takes
// "input_ids" [N, L] int32 alone (no sample). The output value is "out": [N,H',W',Cout], or
// [N, L, Cout] for a text encoder. Every other value is produced by exactly one node, and nodes are
// stored in a valid execution order. Token views are free: NHWC [N,H,W,C] is [N,H*W,C].
struct Graph {
  std::vector<std::string> values;  // value id -> name
  std::vector<Node> nodes;
  int sample = -1, timestep = -1, class_labels = -1, context = -1, output = -1;
  int input_ids = -1;         // token ids [N, L] int32 (text encoders; then sample is -1)
  int in_channels = 0, out_channels = 0;
  int context_dim = 0;        // channels of encoder_hidden_states when context >= 0
  int downsample_factor = 1;  // H and W must be multiples of this
  // The dtype this graph's weights are stored in and its activations run in on the CUDA backend (fp32
  // accumulation always). Components of one model file may differ (mixed precision per component: e.g. an fp16
  // UNet with an fp32 VAE, as diffusers' force_upcast). Model files from format version 3 record it per graph;
  // version 1 and 2 files get it from the graph's tensors when read (model_file.cpp).
  DType dtype = DType::F32;

  int value_id(const std::string& name) const;  // -1 if absent
};

}  // namespace diffrt
