// FLOPs and minimum memory traffic of each node of a planned graph (diffrt bench / profile: achieved TFLOP/s
// and GB/s). Counting rules are those of shared/research/diffusers_spec.md sections 8.4 and 11.5, so the totals
// are comparable with the published figures (SD 1.5 UNet at 64x64, batch 1, 77 tokens: 803.3 GFLOPs; the
// google/ddpm-cifar10-32 UNet at batch 1: 12.44 GFLOPs; the SD VAE decoder from a 64x64 latent: 2.51 TFLOPs):
//   conv2d           2 * N * Ho * Wo * Cout * Cin * KH * KW
//   linear           2 * rows * in * out                     (fused q/k/v and k/v projections included)
//   attention        4 * B * heads * Lq * Lkv * head_dim     (QK^T and PV; softmax not counted; causal
//                    self-attention counts the Lq (Lq + 1) / 2 unmasked pairs instead of Lq * Lkv)
//   time_embedding   2 * N * (dim * out_dim + out_dim * out_dim)   (the MLP; the sinusoid not counted)
//   patch_embed      2 * N * gh * gw * dim * p * p * cin       (the patch conv; the position table not counted)
//   everything else  0 (norms, activations, softmax, bias and residual adds, copies: memory-bound)
// Bytes are the fewest a node must move: every distinct input value read once, the output written once, every
// weight tensor read once (activations and weights in the model dtype; timesteps fp32, labels and token ids
// int32); an embedding lookup reads only the rows it gathers; an adaLN layer_norm reads only its shift and scale
// slices of the modulation vector, a gated linear only its gate slice.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/plan.h"

namespace diffrt {

struct NodeCost {
  double flops = 0;
  uint64_t bytes = 0;         // inputs + output + weights
  uint64_t weight_bytes = 0;  // the weights part of `bytes`
};

// Stored size of every weight tensor by name (from a model file's tensor table). Without it (graphs built
// from a config alone, e.g. in tests) weight sizes are derived from the op attributes for the ops that have
// weights (conv, linear, norms, time embedding); ops added later count no weight bytes until listed there.
using TensorBytes = std::map<std::string, uint64_t>;

// Cost of node k of g under plan p; `elem_bytes` is the size of one activation element (model dtype).
NodeCost node_cost(const Graph& g, const MemoryPlan& p, size_t k, size_t elem_bytes,
                   const TensorBytes* tensor_bytes = nullptr);

struct GraphCost {
  double flops = 0;
  uint64_t bytes = 0, weight_bytes = 0;
  std::map<std::string, double> flops_by_op;  // op name -> FLOPs (only ops with FLOPs)
  std::vector<NodeCost> nodes;                // per node, in execution order
};
GraphCost graph_cost(const Graph& g, const MemoryPlan& p, size_t elem_bytes, const TensorBytes* tensor_bytes = nullptr);

}  // namespace diffrt
