#include "runtime/cpu_executor.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "base/error.h"
#include "kernels/conv/conv.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "runtime/op_params.h"

namespace diffrt {

CpuWeights::CpuWeights(const ModelFile& mf) {
  for (const auto& t : mf.tensors) {
    std::vector<float> v(t.numel());
    to_f32(t.dtype, mf.tensor_data(t), v.data(), v.size());
    w_.emplace(t.name, std::move(v));
  }
}

const float* CpuWeights::get(const std::string& name) const {
  auto it = w_.find(name);
  if (it == w_.end()) fail(ErrorCode::InvalidModel, "model file has no tensor '" + name + "'");
  return it->second.data();
}

CpuExecutor::CpuExecutor(const ModelFile& mf, const CpuWeights& weights, int n, int h, int w)
    : CpuExecutor(mf, weights, mf.graph, PlanInputs{n, h, w, 0}) {}

CpuExecutor::CpuExecutor(const ModelFile& mf, const CpuWeights& weights, const Graph& graph, const PlanInputs& in)
    : mf_(mf), g_(graph), weights_(weights), plan_(plan_memory(graph, in)) {
  arena_.assign(plan_.arena_elems, 0.0f);
  scratch_.assign(std::max<uint64_t>(plan_.conv_scratch_elems, 1), 0.0f);
}

const float* CpuExecutor::value_ptr(int v, const GraphInputs& in) const {
  if (v == g_.sample) return in.sample;
  if (v == g_.timestep) return in.timesteps;
  if (v == g_.context) return in.context;
  if (v == g_.class_labels) return reinterpret_cast<const float*>(in.labels);
  if (v == g_.input_ids) return reinterpret_cast<const float*>(in.input_ids);
  return arena_.data() + plan_.offset[size_t(v)];
}

void CpuExecutor::run(const float* sample, const float* timesteps, const int32_t* labels, float* out) {
  GraphInputs in;
  in.sample = sample; in.timesteps = timesteps; in.labels = labels;
  run(in, out);
}

void CpuExecutor::run(const GraphInputs& in, float* out) {
  const Graph& g = g_;
  check_graph_inputs(g, mf_.conditioning.num_classes, plan_.n, in.sample, in.timesteps, in.labels, in.context,
                     in.input_ids);
  if (in.input_ids) check_input_ids(g, plan_.n, plan_.seq_len, in.input_ids);
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    run_node(g.nodes[k], in);
    if (on_node) on_node(int(k), arena_.data() + plan_.offset[g.nodes[k].output], plan_.shapes[g.nodes[k].output]);
  }
  std::memcpy(out, arena_.data() + plan_.offset[g.output], plan_.shapes[g.output].numel() * sizeof(float));
}

namespace {

const void* cpu_tensor(const void* weights, const std::string& name) {
  return static_cast<const CpuWeights*>(weights)->get(name);
}

// The CPU launch of each op's params (the reference kernels; fp32 throughout).
struct CpuLaunch {
  float* scratch;
  void operator()(const TimestepEmbeddingParams& p) const { timestep_embedding_ref(p); }
  void operator()(const Conv2dParams& p) const { conv2d_ref(p, scratch); }
  void operator()(const LinearParams& p) const { linear_ref(p); }
  void operator()(const GroupNormParams& p) const { group_norm_ref(p); }
  void operator()(const AttentionParams& p) const { attention_ref(p); }
  void operator()(const ConcatParams& p) const { concat_ref(p); }
  void operator()(const Upsample2xParams& p) const { upsample2x_ref(p); }
  void operator()(const AffineParams& p) const { affine_ref(p); }
  void operator()(const LayerNormParams& p) const { layer_norm_ref(p); }
  void operator()(const GegluParams& p) const { geglu_ref(p); }
  void operator()(const EmbeddingParams& p) const { embedding_ref(p); }
  void operator()(const ActivationParams& p) const { activation_ref(p); }
  void operator()(const PatchEmbedParams& p) const { patch_embed_ref(p); }
  void operator()(const UnpatchifyParams& p) const { unpatchify_ref(p); }
};

}  // namespace

void CpuExecutor::run_node(const Node& nd, const GraphInputs& gin) {
  const NodeBinding b = bind_node(nd, plan_, DType::F32, [&](int v) { return value_ptr(v, gin); }, cpu_tensor, &weights_);
  std::visit(CpuLaunch{scratch_.data()}, node_params(b));
}

}  // namespace diffrt
