// FLOP and byte counting per graph node (rules in graph_cost.h). Tested by tests/graph_cost_test.cpp against
// the published totals of the SD 1.5 UNet, the SD VAE decoder and the google/ddpm-cifar10-32 UNet.
#include "runtime/graph_cost.h"

#include <set>
#include <type_traits>
#include <variant>

namespace diffrt {

namespace {

// Weight elements of a node from its attributes (used without a tensor table). `has` says whether a weight
// role is bound (biases are optional). Ops not listed here have no weights.
template <class A>
uint64_t weight_elems_from_attrs(const A& a, const Node& nd, const ValueShape& out) {
  auto has = [&](const char* role) { return nd.weights.count(role) > 0; };
  if constexpr (std::is_same_v<A, Conv2dAttrs>) {
    return uint64_t(a.cout) * uint64_t(a.kh) * uint64_t(a.kw) * uint64_t(a.cin) + (has("bias") ? uint64_t(a.cout) : 0);
  } else if constexpr (std::is_same_v<A, LinearAttrs>) {
    return uint64_t(a.out) * uint64_t(a.in) + (has("bias") ? uint64_t(a.out) : 0);
  } else if constexpr (std::is_same_v<A, GroupNormAttrs> || std::is_same_v<A, LayerNormAttrs>) {
    return (has("weight") ? uint64_t(out.c) : 0) + (has("bias") ? uint64_t(out.c) : 0);
  } else if constexpr (std::is_same_v<A, PatchEmbedAttrs>) {
    return uint64_t(a.dim) * uint64_t(a.patch) * uint64_t(a.patch) * uint64_t(a.cin) + (has("bias") ? uint64_t(a.dim) : 0);
  } else if constexpr (std::is_same_v<A, TimeEmbeddingAttrs>) {
    uint64_t e = uint64_t(a.dim) * uint64_t(a.out_dim) + uint64_t(a.out_dim) * uint64_t(a.out_dim);
    if (has("b1")) e += uint64_t(a.out_dim);
    if (has("b2")) e += uint64_t(a.out_dim);
    if (has("class_table")) e += uint64_t(a.num_classes) * uint64_t(a.out_dim);
    return e;
  } else {
    (void)a; (void)nd; (void)out;
    return 0;
  }
}

}  // namespace

NodeCost node_cost(const Graph& g, const MemoryPlan& p, size_t k, size_t elem_bytes, const TensorBytes* tensor_bytes) {
  const Node& nd = g.nodes.at(k);
  const ValueShape& out = p.shapes.at(size_t(nd.output));
  NodeCost c;
  // Activation traffic: each distinct input once, the output once.
  std::set<int> seen;
  for (size_t i = 0; i < nd.inputs.size(); ++i) {
    const int v = nd.inputs[i];
    if (!seen.insert(v).second) continue;
    const size_t es = (v == g.timestep || v == g.class_labels || v == g.input_ids) ? 4 : elem_bytes;
    uint64_t elems = p.shapes.at(size_t(v)).numel();
    // A modulation / gate source [N, M] is read only at its slices: shift + scale (C each) or the gate (out).
    if (const auto* ln = std::get_if<LayerNormAttrs>(&nd.attrs); ln && i == 1 && ln->shift_offset >= 0)
      elems = uint64_t(out.n) * uint64_t(out.c) * 2;
    if (const auto* l = std::get_if<LinearAttrs>(&nd.attrs); l && i == 2 && l->gate_offset >= 0)
      elems = uint64_t(out.n) * uint64_t(out.c);
    c.bytes += elems * es;
  }
  c.bytes += out.numel() * elem_bytes;

  std::visit([&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<A, Conv2dAttrs>) {
      c.flops = 2.0 * double(out.n) * double(out.h) * double(out.w) * a.cout * double(a.cin) * a.kh * a.kw;
    } else if constexpr (std::is_same_v<A, LinearAttrs>) {
      c.flops = 2.0 * double(out.numel() / uint64_t(out.c)) * double(a.in) * double(a.out);
    } else if constexpr (std::is_same_v<A, AttentionAttrs>) {
      const double lq = double(out.h) * double(out.w);
      double lkv = lq;
      if (nd.inputs.size() > 1) {
        const ValueShape& kv = p.shapes.at(size_t(nd.inputs[1]));
        lkv = double(kv.h) * double(kv.w);
      }
      // Causal self-attention computes only the unmasked (query, key) pairs: Lq (Lq + 1) / 2 of them.
      const double pairs = a.causal && nd.inputs.size() == 1 ? lq * (lq + 1) / 2 : lq * lkv;
      c.flops = 4.0 * double(out.n) * a.heads * pairs * a.head_dim;
    } else if constexpr (std::is_same_v<A, PatchEmbedAttrs>) {
      c.flops = 2.0 * double(out.n) * double(out.h) * double(out.w) * a.dim * double(a.patch) * a.patch * a.cin;
    } else if constexpr (std::is_same_v<A, TimeEmbeddingAttrs>) {
      c.flops = 2.0 * double(out.n) * (double(a.dim) * a.out_dim + double(a.out_dim) * a.out_dim);
    }
    if constexpr (std::is_same_v<A, EmbeddingAttrs>) {
      // Only the looked-up rows are read: N*L token rows and L position rows, whatever the table sizes.
      c.weight_bytes = (out.numel() + uint64_t(out.w) * uint64_t(out.c)) * elem_bytes;
    } else if (!tensor_bytes) {
      c.weight_bytes = weight_elems_from_attrs(a, nd, out) * elem_bytes;
    }
  }, nd.attrs);
  if (tensor_bytes && !std::holds_alternative<EmbeddingAttrs>(nd.attrs)) {
    for (const auto& [role, name] : nd.weights) {
      (void)role;
      auto it = tensor_bytes->find(name);
      if (it != tensor_bytes->end()) c.weight_bytes += it->second;
    }
  }
  c.bytes += c.weight_bytes;
  return c;
}

GraphCost graph_cost(const Graph& g, const MemoryPlan& p, size_t elem_bytes, const TensorBytes* tensor_bytes) {
  GraphCost gc;
  gc.nodes.reserve(g.nodes.size());
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    NodeCost c = node_cost(g, p, k, elem_bytes, tensor_bytes);
    gc.flops += c.flops;
    gc.bytes += c.bytes;
    gc.weight_bytes += c.weight_bytes;
    if (c.flops > 0) gc.flops_by_op[op_name(g.nodes[k].attrs)] += c.flops;
    gc.nodes.push_back(c);
  }
  return gc;
}

}  // namespace diffrt
