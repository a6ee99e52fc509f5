// Kernel params of graph nodes from their attributes and planned shapes, shared by the CPU and CUDA executors so
// both launch exactly the same problem: the executor resolves the pointers (host fp32 or device model dtype) and
// passes the element size of the activations; the builder does the shape and offset arithmetic. Covers the ops of
// DiT (patch_embed, unpatchify) and the DiT extensions of layer_norm (adaLN modulation) and linear (gated residual).
#pragma once
#include <cstddef>

#include "kernels/gemm/gemm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/unpatchify/unpatchify.h"
#include "model/graph.h"
#include "runtime/plan.h"

namespace diffrt {

// x: [N, H, W, cin] -> y: [N, H/p, W/p, dim]; w, bias: the node's "weight" and "bias".
PatchEmbedParams patch_embed_params(const PatchEmbedAttrs& a, const ValueShape& x, const void* xp, const void* w,
                                    const void* bias, void* y);
// x: [N, gh, gw, p*p*C] -> y: [N, gh*p, gw*p, C].
UnpatchifyParams unpatchify_params(const UnpatchifyAttrs& a, const ValueShape& x, const void* xp, void* y);
// adaLN: points p.shift/p.scale into mod [N, M] (the node's second input) at the attribute offsets; y is the node's
// output shape (rows = numel / C, rows per sample = rows / N). No-op for an unmodulated node.
void bind_layer_norm_mod(LayerNormParams& p, const LayerNormAttrs& a, const void* mod, const ValueShape& mod_shape,
                         const ValueShape& y, size_t elem_bytes);
// Gated linear: points p.gate into the gate source [N, M] (the node's third input) at a.gate_offset. No-op for an
// ungated node.
void bind_linear_gate(LinearParams& p, const LinearAttrs& a, const void* gate_src, const ValueShape& gate_shape,
                      const ValueShape& y, size_t elem_bytes);

}  // namespace diffrt
