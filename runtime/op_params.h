// The one place that turns a graph node into its op's params struct. Both executors bind the node's values and
// weights to pointers in their own memory (NodeBinding: host fp32 on the CPU, device memory in the model dtype
// on CUDA), call node_params(), and hand the result to the op's CPU reference or CUDA launcher; nothing else
// about an op is backend-specific.
//
// Adding an op: its kernel folder (params, *_ref.cpp, .cu), its attrs in model/graph.h, one builder in
// op_params.cpp (the registry row: the NodeParams alternative at the attrs' index), and the two launch
// overloads (cpu_executor.cpp, cuda/cuda_executor.cpp). NodeParams lists the params in OpAttrs' order, which a
// static_assert in op_params.cpp checks.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <variant>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "kernels/conv/conv.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "kernels/unpatchify/unpatchify.h"
#include "model/graph.h"
#include "runtime/plan.h"

namespace diffrt {

using NodeParams = std::variant<TimestepEmbeddingParams, Conv2dParams, LinearParams, GroupNormParams, AttentionParams,
                                ConcatParams, Upsample2xParams, AffineParams, LayerNormParams, GegluParams,
                                EmbeddingParams, ActivationParams, PatchEmbedParams, UnpatchifyParams>;

// A node's values and weights bound to one backend's memory.
struct NodeBinding {
  static constexpr size_t kMaxInputs = 4;
  const Node* node = nullptr;
  std::array<const void*, kMaxInputs> in{};             // per node input (graph inputs included)
  std::array<const ValueShape*, kMaxInputs> in_shape{};
  void* out = nullptr;
  const ValueShape* out_shape = nullptr;
  DType dtype = DType::F32;                            // activations and weights
  // Weight lookup by tensor name (throws naming the tensor when the backend has none).
  const void* (*tensor)(const void* backend, const std::string& name) = nullptr;
  const void* backend = nullptr;

  const void* weight(const char* role) const;  // the node's tensor for `role`, or null when it has none
};

[[noreturn]] void throw_too_many_inputs(const Node& nd);

// Binds `nd` with `value(v)` giving each value's pointer and `plan` its shapes; the executors' only glue.
template <class ValueFn>
NodeBinding bind_node(const Node& nd, const MemoryPlan& plan, DType dtype, ValueFn&& value,
                      const void* (*tensor)(const void*, const std::string&), const void* backend) {
  NodeBinding b;
  b.node = &nd;
  if (nd.inputs.size() > NodeBinding::kMaxInputs) throw_too_many_inputs(nd);
  for (size_t i = 0; i < nd.inputs.size(); ++i) {
    b.in[i] = static_cast<const void*>(value(nd.inputs[i]));
    b.in_shape[i] = &plan.shapes[size_t(nd.inputs[i])];
  }
  b.out = const_cast<void*>(static_cast<const void*>(value(nd.output)));
  b.out_shape = &plan.shapes[size_t(nd.output)];
  b.dtype = dtype;
  b.tensor = tensor;
  b.backend = backend;
  return b;
}

// The params of the node's op (the alternative at the index of nd.attrs). Workspaces (GroupNorm on CUDA) and
// handles are the backend's to fill in.
NodeParams node_params(const NodeBinding& b);

}  // namespace diffrt
