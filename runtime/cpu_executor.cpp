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
  return arena_.data() + plan_.offset[v];
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

void CpuExecutor::run_node(const Node& nd, const GraphInputs& gin) {
  const float* timesteps = gin.timesteps;
  const int32_t* labels = gin.labels;
  auto in = [&](size_t i) { return value_ptr(nd.inputs[i], gin); };
  auto shape = [&](size_t i) -> const ValueShape& { return plan_.shapes[nd.inputs[i]]; };
  auto wt = [&](const char* role) -> const float* {
    auto it = nd.weights.find(role);
    return it == nd.weights.end() ? nullptr : weights_.get(it->second);
  };
  float* y = arena_.data() + plan_.offset[nd.output];
  const ValueShape& ys = plan_.shapes[nd.output];

  std::visit([&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<A, TimeEmbeddingAttrs>) {
      TimestepEmbeddingParams p;
      p.timesteps = timesteps;
      p.class_labels = nd.inputs.size() > 1 ? labels : nullptr;
      p.w1 = wt("w1"); p.b1 = wt("b1"); p.w2 = wt("w2"); p.b2 = wt("b2");
      p.class_table = wt("class_table");
      p.out = y;
      p.n = int(ys.n); p.dim = a.dim; p.out_dim = a.out_dim; p.num_classes = a.num_classes;
      p.flip = a.flip; p.freq_shift = a.freq_shift;
      timestep_embedding_ref(p);
    } else if constexpr (std::is_same_v<A, Conv2dAttrs>) {
      Conv2dParams p;
      p.x = in(0); p.w = wt("weight"); p.bias = wt("bias");
      p.residual = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.y = y;
      p.n = int(ys.n); p.h = int(shape(0).h); p.w_in = int(shape(0).w); p.cin = a.cin; p.cout = a.cout;
      p.kh = a.kh; p.kw = a.kw; p.stride = a.stride;
      p.pad_top = a.pad_top; p.pad_left = a.pad_left; p.pad_bottom = a.pad_bottom; p.pad_right = a.pad_right;
      p.out_scale = a.out_scale;
      conv2d_ref(p, scratch_.data());
    } else if constexpr (std::is_same_v<A, LinearAttrs>) {
      LinearParams p;
      p.x = in(0); p.w = wt("weight"); p.bias = wt("bias");
      p.residual = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.y = y;
      p.m = int(ys.numel() / ys.c); p.n = a.out; p.k = a.in;
      p.silu_input = a.silu_input; p.out_scale = a.out_scale;
      if (nd.inputs.size() > 2) bind_linear_gate(p, a, in(2), shape(2), ys, sizeof(float));
      linear_ref(p);
    } else if constexpr (std::is_same_v<A, GroupNormAttrs>) {
      GroupNormParams p;
      p.x = in(0); p.y = y; p.gamma = wt("weight"); p.beta = wt("bias");
      p.emb = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.emb_mode = a.emb_mode;
      p.n = int(ys.n); p.hw = int(ys.h * ys.w); p.c = int(ys.c); p.groups = a.groups;
      p.eps = a.eps; p.silu = a.silu;
      group_norm_ref(p);
    } else if constexpr (std::is_same_v<A, AttentionAttrs>) {
      const int C = a.heads * a.head_dim;
      AttentionParams p;
      p.o = y;
      p.batch = int(ys.n); p.heads = a.heads; p.lq = int(ys.h * ys.w); p.head_dim = a.head_dim;
      p.ldo = C;
      p.scale = a.scale;
      p.causal = a.causal;
      if (nd.inputs.size() == 1) {  // self: [q | k | v] rows of one tensor
        const float* qkv = in(0);
        p.q = qkv; p.k = qkv + C; p.v = qkv + 2 * C;
        p.lkv = p.lq;
        p.ldq = p.ldk = p.ldv = 3 * C;
      } else {  // cross: q, then [k | v] rows of the context projection
        const float* kv = in(1);
        p.q = in(0); p.k = kv; p.v = kv + C;
        p.lkv = int(shape(1).h * shape(1).w);
        p.ldq = C; p.ldk = p.ldv = 2 * C;
      }
      attention_ref(p);
    } else if constexpr (std::is_same_v<A, ConcatAttrs>) {
      ConcatParams p;
      p.a = in(0); p.b = in(1); p.y = y;
      p.pixels = (long long)(ys.n * ys.h * ys.w); p.ca = int(shape(0).c); p.cb = int(shape(1).c);
      concat_ref(p);
    } else if constexpr (std::is_same_v<A, Upsample2xAttrs>) {
      Upsample2xParams p;
      p.x = in(0); p.y = y;
      p.n = int(ys.n); p.h = int(shape(0).h); p.w = int(shape(0).w); p.c = int(ys.c);
      upsample2x_ref(p);
    } else if constexpr (std::is_same_v<A, AffineAttrs>) {
      AffineParams p;
      p.x = in(0); p.y = y; p.count = (long long)ys.numel(); p.scale = a.scale; p.shift = a.shift;
      affine_ref(p);
    } else if constexpr (std::is_same_v<A, LayerNormAttrs>) {
      LayerNormParams p;
      p.x = in(0); p.y = y; p.gamma = wt("weight"); p.beta = wt("bias");
      p.rows = (long long)(ys.numel() / ys.c); p.c = int(ys.c); p.eps = a.eps;
      if (nd.inputs.size() > 1) bind_layer_norm_mod(p, a, in(1), shape(1), ys, sizeof(float));
      layer_norm_ref(p);
    } else if constexpr (std::is_same_v<A, GegluAttrs>) {
      GegluParams p;
      p.x = in(0); p.y = y; p.rows = (long long)(ys.numel() / ys.c); p.f = int(ys.c);
      geglu_ref(p);
    } else if constexpr (std::is_same_v<A, EmbeddingAttrs>) {
      EmbeddingParams p;
      p.ids = gin.input_ids;
      p.token_table = wt("token"); p.pos_table = wt("position"); p.y = y;
      p.n = int(ys.n); p.l = int(ys.w); p.c = a.dim; p.vocab = a.vocab; p.max_positions = a.max_positions;
      embedding_ref(p);
    } else if constexpr (std::is_same_v<A, PatchEmbedAttrs>) {
      patch_embed_ref(patch_embed_params(a, shape(0), in(0), wt("weight"), wt("bias"), y));
    } else if constexpr (std::is_same_v<A, UnpatchifyAttrs>) {
      unpatchify_ref(unpatchify_params(a, shape(0), in(0), y));
    } else {
      static_assert(std::is_same_v<A, ActivationAttrs>);
      ActivationParams p;
      p.x = in(0); p.y = y; p.count = (long long)ys.numel(); p.kind = a.kind;
      activation_ref(p);
    }
  }, nd.attrs);
}

}  // namespace diffrt
