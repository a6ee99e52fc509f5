// Builds the diffrt op graph of a diffusers UNet2DConditionModel (Stable Diffusion 1.x/2.x) and the
// tensors it binds; spec: shared/research/diffusers_spec.md section 11.2.
//
// Graph inputs: "sample" [N,H,W,Cin], "timestep" [N], "encoder_hidden_states" [N,L,context_dim].
// Transformer2DModel is built from graph ops on NHWC activations (a token view is free):
//   r = x; h = GroupNorm(G, eps 1e-6)(x); h = proj_in(h)              (1x1 conv or Linear == linear)
//   per BasicTransformerBlock:
//     h = to_out.0(attention(to_qkv(LN1(h)))) + h                       (self; q/k/v fused, no bias)
//     h = to_out.0(attention(to_q(LN2(h)), to_kv(context))) + h         (cross; k/v fused [2C, ctx])
//     h = ff.net.2(geglu(ff.net.0.proj(LN3(h)))) + h
//   out = proj_out(h) + r
// Stored tensors: the diffusers names, except the fused "...attn1.to_qkv.weight" [3C, C] and
// "...attn2.to_kv.weight" [2C, context_dim]; proj_in/proj_out conv weights [C,C,1,1] are stored as
// linear weights [C, C].
#pragma once
#include <map>
#include <string>

#include "weights_converter/block_builder.h"
#include "weights_converter/unet2d_condition_config.h"

namespace diffrt {

// `strict`: unexpected tensors are errors (otherwise warnings).
BuiltModel build_unet2d_condition(const UNet2DConditionConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                                  DType dtype, bool strict, const std::string& origin);

// The graph alone (no weights), e.g. for plan-only checks.
Graph build_unet2d_condition_graph(const UNet2DConditionConfig& cfg);

// The checkpoint tensors (diffusers name -> shape) the config implies.
std::map<std::string, TensorShape> unet2d_condition_expected_tensors(const UNet2DConditionConfig& cfg);

}  // namespace diffrt
