// Builds the diffrt op graph of a diffusers DiT (Transformer2DModel, norm_type "ada_norm_zero") and the tensors it
// binds. Semantics: tests/fixtures/dit/README.md (diffusers 0.27.2). Graph inputs "sample" [N,H,W,C] (NHWC latents;
// H, W multiples of patch_size), "timestep" [N], "class_labels" [N] in [0, num_embeds_ada_norm] (the last row is the
// learned null class); output "out" [N,H,W,C_out].
//
//   x  = patch_embed(sample)                               pos_embed: conv k=p s=p + bias + 2-D sin-cos table
//   c_i = time_embedding_i(t, y)                           transformer_blocks.i.norm1.emb (Timesteps(256, cos first,
//                                                          shift 1) -> linear_1 -> SiLU -> linear_2, + label row)
//   mod = silu(c) W^T + b                                  the adaLN vectors: per block [shift, scale, gate]_msa,
//                                                          [shift, scale, gate]_mlp (6D), then proj_out_1's
//                                                          [shift, scale] (2D) for the final layer
//   per block i (o = the block's offset into mod):
//     h = layer_norm(x; eps 1e-6, shift o, scale o+D)                         norm1.norm (adaLN)
//     x = x + gate[o+2D] * to_out.0(attention(to_qkv(h)))                     attn1, gated residual in the linear
//     h = layer_norm(x; eps norm_eps, [norm3 affine], shift o+3D, scale o+4D) norm3
//     x = x + gate[o+5D] * ff.net.2(act(ff.net.0.proj(h)))                    act: gelu_tanh, gelu or geglu
//   h = layer_norm(x; eps 1e-6, shift f, scale f+D);  out = unpatchify(proj_out_2(h))
//
// Conditioning copies. Every block owns a copy of the embedder (norm1.emb.*) and the final layer reads block 0's.
// When every block's copy is bit-identical to block 0's (the hub checkpoints, by construction) the graph computes
// one c and ONE fused modulation linear "adaln_modulation" [N, 6D*L + 2D] (stored "adaln_modulation.weight" /
// ".bias": the blocks' norm1.linear rows in block order, then proj_out_1's; when 6D*L + 2D exceeds the graph's
// channel limit 2^20 - 1, per-block norm1.linear nodes read the one c instead). Otherwise each block keeps its own
// time_embedding and norm1.linear ([N, 6D] each), and proj_out_1 reads block 0's c. The checkpoint must hold every
// copy either way (all are checked for shape; unused copies are not stored).
// Stored tensors: diffusers names, except the fused "...attn1.to_qkv.{weight,bias}" and "adaln_modulation.*", and
// pos_embed.proj.weight stored KRSC [D, p, p, C]. The position table is never read from the checkpoint: a stale
// "pos_embed.pos_embed" tensor is ignored with a warning, as diffusers ignores it.
#pragma once
#include <map>
#include <string>

#include "weights_converter/block_builder.h"
#include "weights_converter/dit_config.h"

namespace diffrt {

constexpr int kDiTTimestepChannels = 256;  // CombinedTimestepLabelEmbeddings' Timesteps(num_channels=256)

// `strict`: unexpected tensors are errors (otherwise warnings).
BuiltModel build_dit(const DiTConfig& cfg, const std::map<std::string, SafeTensor>& weights, DType dtype, bool strict,
                     const std::string& origin);

// The graph alone (no weights), e.g. for plan-only checks; `shared_embedding` picks the deduplicated form.
Graph build_dit_graph(const DiTConfig& cfg, bool shared_embedding = true);

// The checkpoint tensors (diffusers name -> shape) the config implies, every per-block copy included.
std::map<std::string, TensorShape> dit_expected_tensors(const DiTConfig& cfg);

// The tensors the model file stores (stored name -> shape) for either conditioning form.
std::map<std::string, TensorShape> dit_stored_tensors(const DiTConfig& cfg, bool shared_embedding);

// True when every block's norm1.emb.* tensors equal block 0's bit for bit (same dtype, shape and bytes). Missing
// tensors count as different (finish_model reports them).
bool dit_embeddings_identical(const DiTConfig& cfg, const std::map<std::string, SafeTensor>& weights);

}  // namespace diffrt
