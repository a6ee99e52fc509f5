// One params builder per op (contract in op_params.h), shared by the CPU and CUDA executors.
#include "runtime/op_params.h"

#include <type_traits>

#include "base/error.h"

namespace diffrt {

namespace {

static_assert(std::variant_size_v<OpAttrs> == std::variant_size_v<NodeParams>,
              "NodeParams must have one alternative per OpAttrs alternative, in order (checked per node below)");

const char* at(const void* p, size_t bytes) { return static_cast<const char*>(p) + bytes; }

struct Builder {
  const NodeBinding& b;
  const ValueShape& ys() const { return *b.out_shape; }
  const ValueShape& xs(size_t i) const { return *b.in_shape[i]; }
  size_t inputs() const { return b.node->inputs.size(); }
  const void* opt_in(size_t i) const { return inputs() > i ? b.in[i] : nullptr; }

  NodeParams operator()(const TimeEmbeddingAttrs& a) const {
    TimestepEmbeddingParams p;
    p.timesteps = static_cast<const float*>(b.in[0]);  // the graph's timestep input, fp32 on every backend
    p.class_labels = static_cast<const int32_t*>(opt_in(1));
    p.w1 = b.weight("w1"); p.b1 = b.weight("b1"); p.w2 = b.weight("w2"); p.b2 = b.weight("b2");
    p.class_table = b.weight("class_table");
    p.out = b.out;
    p.n = int(ys().n); p.dim = a.dim; p.out_dim = a.out_dim; p.num_classes = a.num_classes;
    p.flip = a.flip; p.freq_shift = a.freq_shift;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const Conv2dAttrs& a) const {
    Conv2dParams p;
    p.x = b.in[0]; p.w = b.weight("weight"); p.bias = b.weight("bias");
    p.residual = opt_in(1);
    p.y = b.out;
    p.n = int(ys().n); p.h = int(xs(0).h); p.w_in = int(xs(0).w); p.cin = a.cin; p.cout = a.cout;
    p.kh = a.kh; p.kw = a.kw; p.stride = a.stride;
    p.pad_top = a.pad_top; p.pad_left = a.pad_left; p.pad_bottom = a.pad_bottom; p.pad_right = a.pad_right;
    p.out_scale = a.out_scale;
    p.dtype = b.dtype;
    return p;
  }
  // Rows of the output per sample (tokens): the per-sample vectors of adaLN and the gate broadcast over them.
  long long rows_per_sample() const { return (long long)(ys().numel() / uint64_t(ys().c) / uint64_t(ys().n)); }

  NodeParams operator()(const LinearAttrs& a) const {
    LinearParams p;
    p.x = b.in[0]; p.w = b.weight("weight"); p.bias = b.weight("bias");
    p.residual = opt_in(1);
    p.y = b.out;
    p.m = int(ys().numel() / uint64_t(ys().c)); p.n = a.out; p.k = a.in;
    p.silu_input = a.silu_input; p.out_scale = a.out_scale;
    if (a.gate_offset >= 0) {  // [x, residual, gate source [N, M]]: the gate at gate_offset
      p.gate = at(b.in[2], size_t(a.gate_offset) * dtype_size(b.dtype));
      p.gate_ld = xs(2).c;
      p.rows_per_gate = rows_per_sample();
    }
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const GroupNormAttrs& a) const {
    GroupNormParams p;
    p.x = b.in[0]; p.y = b.out; p.gamma = b.weight("weight"); p.beta = b.weight("bias");
    p.emb = opt_in(1);
    p.emb_mode = a.emb_mode;
    p.n = int(ys().n); p.hw = int(ys().h * ys().w); p.c = int(ys().c); p.groups = a.groups;
    p.eps = a.eps; p.silu = a.silu;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const AttentionAttrs& a) const {
    const int C = a.heads * a.head_dim;
    const size_t es = dtype_size(b.dtype);
    AttentionParams p;
    p.o = b.out;
    p.batch = int(ys().n); p.heads = a.heads; p.lq = int(ys().h * ys().w); p.head_dim = a.head_dim;
    p.ldo = C;
    p.scale = a.scale;
    p.causal = a.causal;
    if (inputs() == 1) {  // self: [q | k | v] rows of one tensor
      p.q = b.in[0]; p.k = at(b.in[0], size_t(C) * es); p.v = at(b.in[0], size_t(2 * C) * es);
      p.lkv = p.lq;
      p.ldq = p.ldk = p.ldv = 3 * C;
    } else {  // cross: q, then [k | v] rows of the context projection
      p.q = b.in[0]; p.k = b.in[1]; p.v = at(b.in[1], size_t(C) * es);
      p.lkv = int(xs(1).h * xs(1).w);
      p.ldq = C; p.ldk = p.ldv = 2 * C;
    }
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const ConcatAttrs&) const {
    ConcatParams p;
    p.a = b.in[0]; p.b = b.in[1]; p.y = b.out;
    p.pixels = (long long)(ys().n * ys().h * ys().w); p.ca = int(xs(0).c); p.cb = int(xs(1).c);
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const Upsample2xAttrs&) const {
    Upsample2xParams p;
    p.x = b.in[0]; p.y = b.out;
    p.n = int(ys().n); p.h = int(xs(0).h); p.w = int(xs(0).w); p.c = int(ys().c);
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const AffineAttrs& a) const {
    AffineParams p;
    p.x = b.in[0]; p.y = b.out; p.count = (long long)ys().numel(); p.scale = a.scale; p.shift = a.shift;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const LayerNormAttrs& a) const {
    LayerNormParams p;
    p.x = b.in[0]; p.y = b.out; p.gamma = b.weight("weight"); p.beta = b.weight("bias");
    p.rows = (long long)(ys().numel() / uint64_t(ys().c)); p.c = int(ys().c); p.eps = a.eps;
    if (a.shift_offset >= 0) {  // adaLN: [x, mod [N, M]] with shift and scale slices of mod
      const size_t es = dtype_size(b.dtype);
      p.shift = at(b.in[1], size_t(a.shift_offset) * es);
      p.scale = at(b.in[1], size_t(a.scale_offset) * es);
      p.mod_ld = xs(1).c;
      p.rows_per_sample = rows_per_sample();
    }
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const GegluAttrs&) const {
    GegluParams p;
    p.x = b.in[0]; p.y = b.out; p.rows = (long long)(ys().numel() / uint64_t(ys().c)); p.f = int(ys().c);
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const EmbeddingAttrs& a) const {
    EmbeddingParams p;
    p.ids = static_cast<const int32_t*>(b.in[0]);  // range-checked by the executors before the run
    p.token_table = b.weight("token"); p.pos_table = b.weight("position"); p.y = b.out;
    p.n = int(ys().n); p.l = int(ys().w); p.c = a.dim; p.vocab = a.vocab; p.max_positions = a.max_positions;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const ActivationAttrs& a) const {
    ActivationParams p;
    p.x = b.in[0]; p.y = b.out; p.count = (long long)ys().numel(); p.kind = a.kind;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const PatchEmbedAttrs& a) const {
    PatchEmbedParams p;
    p.x = b.in[0]; p.w = b.weight("weight"); p.bias = b.weight("bias"); p.y = b.out;
    p.n = int(xs(0).n); p.h = int(xs(0).h); p.w_in = int(xs(0).w); p.cin = a.cin; p.dim = a.dim; p.patch = a.patch;
    p.pos_embed = a.pos_embed; p.base_size = a.base_size; p.interpolation_scale = a.interpolation_scale;
    p.dtype = b.dtype;
    return p;
  }
  NodeParams operator()(const UnpatchifyAttrs& a) const {
    UnpatchifyParams p;
    p.x = b.in[0]; p.y = b.out;
    p.n = int(xs(0).n); p.gh = int(xs(0).h); p.gw = int(xs(0).w); p.patch = a.patch; p.c = a.channels;
    p.dtype = b.dtype;
    return p;
  }
};

}  // namespace

void throw_too_many_inputs(const Node& nd) {
  fail(ErrorCode::InvalidModel, "node '" + nd.name + "' has " + std::to_string(nd.inputs.size()) + " inputs (at most " +
                                    std::to_string(NodeBinding::kMaxInputs) + ")");
}

const void* NodeBinding::weight(const char* role) const {
  auto it = node->weights.find(role);
  return it == node->weights.end() ? nullptr : tensor(backend, it->second);
}

NodeParams node_params(const NodeBinding& b) {
  NodeParams p = std::visit(Builder{b}, b.node->attrs);
  if (p.index() != b.node->attrs.index())
    fail(ErrorCode::Internal, "op_params: params of node '" + b.node->name + "' do not follow its attrs");
  return p;
}

}  // namespace diffrt
