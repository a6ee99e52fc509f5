#include "runtime/plan.h"

#include <algorithm>
#include <map>
#include <type_traits>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/conv/conv.h"

namespace diffrt {

std::string ValueShape::str() const {
  if (rank == 1) return "[" + std::to_string(n) + "]";
  if (rank == 2) return "[" + std::to_string(n) + "," + std::to_string(c) + "]";
  if (rank == 3) return "[" + std::to_string(n) + "," + std::to_string(w) + "," + std::to_string(c) + "]";
  return "[" + std::to_string(n) + "," + std::to_string(h) + "," + std::to_string(w) + "," + std::to_string(c) + "]";
}

namespace {

constexpr uint64_t kAlignElems = 64;  // 256 bytes for fp32

[[noreturn]] void bad(const Node& nd, const std::string& what) {
  fail(ErrorCode::InvalidModel, "graph node '" + nd.name + "' (" + op_name(nd.attrs) + "): " + what);
}

ValueShape infer(const Node& nd, const std::vector<ValueShape>& s) {
  auto in = [&](size_t i) -> const ValueShape& { return s[nd.inputs[i]]; };
  auto want_inputs = [&](size_t lo, size_t hi) {
    if (nd.inputs.size() < lo || nd.inputs.size() > hi) bad(nd, "wrong number of inputs");
  };
  return std::visit([&](const auto& a) -> ValueShape {
    using A = std::decay_t<decltype(a)>;
    ValueShape o;
    if constexpr (std::is_same_v<A, TimeEmbeddingAttrs>) {
      want_inputs(1, 2);
      o.rank = 2; o.n = in(0).n; o.c = a.out_dim;
    } else if constexpr (std::is_same_v<A, Conv2dAttrs>) {
      want_inputs(1, 2);
      const ValueShape& x = in(0);
      if (x.rank != 4 || x.c != a.cin) bad(nd, "expects [N,H,W," + std::to_string(a.cin) + "], got " + x.str());
      o = x;
      o.h = conv_out_dim(int(x.h), a.kh, a.stride, a.pad_top, a.pad_bottom);
      o.w = conv_out_dim(int(x.w), a.kw, a.stride, a.pad_left, a.pad_right);
      o.c = a.cout;
      if (o.h < 1 || o.w < 1) bad(nd, "input " + x.str() + " is too small");
      if (nd.inputs.size() == 2 && (in(1).rank != 4 || in(1).numel() != o.numel() || in(1).c != o.c))
        bad(nd, "residual " + in(1).str() + " does not match output " + o.str());
    } else if constexpr (std::is_same_v<A, LinearAttrs>) {
      want_inputs(1, a.gate_offset >= 0 ? 3 : 2);
      if (in(0).c != a.in || in(0).rank < 2) bad(nd, "expects last dim " + std::to_string(a.in) + ", got " + in(0).str());
      o = in(0);
      o.c = a.out;
      if (nd.inputs.size() >= 2 && (in(1).numel() != o.numel() || in(1).c != o.c))
        bad(nd, "residual " + in(1).str() + " does not match output " + o.str());
      if (a.gate_offset >= 0) {  // gate source [N, M] holds the gate at [gate_offset, gate_offset + out)
        if (nd.inputs.size() != 3) bad(nd, "a gated linear takes [x, residual, gate source]");
        const ValueShape& g = in(2);
        if (g.rank != 2 || g.n != o.n || int64_t(a.gate_offset) + a.out > g.c)
          bad(nd, "gate source " + g.str() + " must be [" + std::to_string(o.n) + ", >= " +
                      std::to_string(int64_t(a.gate_offset) + a.out) + "]");
      }
    } else if constexpr (std::is_same_v<A, GroupNormAttrs>) {
      want_inputs(1, 2);
      o = in(0);
      if (o.rank != 4 || a.groups <= 0 || o.c % a.groups) bad(nd, "groups do not divide channels of " + o.str());
      bool has_emb = a.emb_mode != EmbMode::None;
      if (has_emb != (nd.inputs.size() == 2)) bad(nd, "embedding input does not match emb_mode");
      if (has_emb) {
        int64_t want = a.emb_mode == EmbMode::ScaleShift ? 2 * o.c : o.c;
        if (in(1).rank != 2 || in(1).n != o.n || in(1).c != want)
          bad(nd, "embedding " + in(1).str() + " must be [N," + std::to_string(want) + "]");
      }
    } else if constexpr (std::is_same_v<A, AttentionAttrs>) {
      want_inputs(1, 2);
      o = in(0);
      const int64_t c1 = int64_t(a.heads) * a.head_dim;
      if (nd.inputs.size() == 1) {
        if (o.rank < 3 || o.c != 3 * c1) bad(nd, "expects fused qkv channels " + std::to_string(3 * c1) + ", got " + o.str());
      } else {
        const ValueShape& kv = in(1);
        if (o.rank < 3 || o.c != c1) bad(nd, "expects q with " + std::to_string(c1) + " channels, got " + o.str());
        if (kv.rank < 3 || kv.n != o.n || kv.c != 2 * c1)
          bad(nd, "expects kv [" + std::to_string(o.n) + ",L," + std::to_string(2 * c1) + "], got " + kv.str());
      }
      o.c = c1;
    } else if constexpr (std::is_same_v<A, ConcatAttrs>) {
      want_inputs(2, 2);
      const ValueShape &x = in(0), &y = in(1);
      if (x.rank != 4 || y.rank != 4 || x.n != y.n || x.h != y.h || x.w != y.w)
        bad(nd, "cannot concatenate " + x.str() + " and " + y.str());
      o = x;
      o.c = x.c + y.c;
    } else if constexpr (std::is_same_v<A, Upsample2xAttrs>) {
      want_inputs(1, 1);
      o = in(0);
      if (o.rank != 4) bad(nd, "expects [N,H,W,C]");
      o.h *= 2; o.w *= 2;
    } else if constexpr (std::is_same_v<A, AffineAttrs>) {
      want_inputs(1, 1);
      o = in(0);
    } else if constexpr (std::is_same_v<A, LayerNormAttrs>) {
      want_inputs(a.shift_offset >= 0 ? 2 : 1, a.shift_offset >= 0 ? 2 : 1);
      o = in(0);
      if (o.rank < 2) bad(nd, "expects [..., C], got " + o.str());
      if (a.shift_offset >= 0) {  // adaLN: mod [N, M] holds shift and scale slices of C channels each
        const ValueShape& m = in(1);
        const int64_t need = std::max(int64_t(a.shift_offset), int64_t(a.scale_offset)) + o.c;
        if (m.rank != 2 || m.n != o.n || need > m.c)
          bad(nd, "modulation " + m.str() + " must be [" + std::to_string(o.n) + ", >= " + std::to_string(need) + "]");
      }
    } else if constexpr (std::is_same_v<A, GegluAttrs>) {
      want_inputs(1, 1);
      o = in(0);
      if (o.rank < 2 || o.c % 2) bad(nd, "expects an even last dim, got " + o.str());
      o.c /= 2;
    } else if constexpr (std::is_same_v<A, EmbeddingAttrs>) {
      want_inputs(1, 1);
      const ValueShape& ids = in(0);
      if (ids.rank != 3 || ids.h != 1 || ids.c != 1) bad(nd, "expects token ids [N, L], got " + ids.str());
      if (ids.w > a.max_positions)
        fail(ErrorCode::InvalidArgument, "graph node '" + nd.name + "': " + std::to_string(ids.w) +
                                             " tokens, but the text encoder has " + std::to_string(a.max_positions) +
                                             " positions");
      o = ids;
      o.c = a.dim;
    } else if constexpr (std::is_same_v<A, PatchEmbedAttrs>) {
      want_inputs(1, 1);
      const ValueShape& x = in(0);
      if (x.rank != 4 || x.c != a.cin) bad(nd, "expects [N,H,W," + std::to_string(a.cin) + "], got " + x.str());
      if (x.h % a.patch || x.w % a.patch)
        fail(ErrorCode::InvalidArgument, "graph node '" + nd.name + "': input " + x.str() +
                                             " is not a whole number of " + std::to_string(a.patch) + "x" +
                                             std::to_string(a.patch) + " patches");
      o = {4, x.n, x.h / a.patch, x.w / a.patch, a.dim};
    } else if constexpr (std::is_same_v<A, UnpatchifyAttrs>) {
      want_inputs(1, 1);
      const ValueShape& x = in(0);
      if (x.rank != 4 || x.c != int64_t(a.patch) * a.patch * a.channels)
        bad(nd, "expects [N,gh,gw," + std::to_string(int64_t(a.patch) * a.patch * a.channels) + "], got " + x.str());
      o = {4, x.n, x.h * a.patch, x.w * a.patch, a.channels};
    } else {
      static_assert(std::is_same_v<A, ActivationAttrs>);
      want_inputs(1, 1);
      o = in(0);
    }
    return o;
  }, nd.attrs);
}

// First-fit offset allocator over a growing arena.
class ArenaAllocator {
 public:
  uint64_t alloc(uint64_t size) {
    size = align_up(std::max<uint64_t>(size, 1), kAlignElems);
    uint64_t pos = 0;
    for (auto it = live_.begin(); it != live_.end(); ++it) {
      if (it->first - pos >= size) break;
      pos = std::max(pos, it->first + it->second);
    }
    live_.emplace(pos, size);
    top_ = std::max(top_, pos + size);
    return pos;
  }
  void release(uint64_t off) { live_.erase(off); }
  uint64_t top() const { return top_; }

 private:
  std::map<uint64_t, uint64_t> live_;  // offset -> size, sorted
  uint64_t top_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const Graph& g, const PlanInputs& in, const PlanLimits& lim) {
  const int n = in.n, h = in.h, w = in.w;
  if (n < 1 || n > lim.max_batch)
    fail(ErrorCode::InvalidArgument, "batch " + std::to_string(n) + " out of range [1, " + std::to_string(lim.max_batch) + "]");
  if (g.sample >= 0 && (h < 1 || w < 1 || h > lim.max_side || w > lim.max_side))
    fail(ErrorCode::InvalidArgument, "size " + std::to_string(h) + "x" + std::to_string(w) + " out of range [1, " +
                                         std::to_string(lim.max_side) + "]");
  if (g.sample >= 0 && (h % g.downsample_factor || w % g.downsample_factor))
    fail(ErrorCode::InvalidArgument, "size " + std::to_string(h) + "x" + std::to_string(w) +
                                         " is not a multiple of " + std::to_string(g.downsample_factor) +
                                         " (the network downsamples that many times over)");
  if (g.input_ids >= 0 && (in.seq_len < 1 || in.seq_len > lim.max_context_len))
    fail(ErrorCode::InvalidArgument, "input_ids length " + std::to_string(in.seq_len) + " out of range [1, " +
                                         std::to_string(lim.max_context_len) + "]");
  if (g.input_ids < 0 && in.seq_len != 0) fail(ErrorCode::InvalidArgument, "this network takes no input_ids");
  if (g.sample < 0 && g.input_ids < 0) fail(ErrorCode::InvalidModel, "graph has neither a sample nor an input_ids input");
  if (g.context >= 0 && (in.context_len < 1 || in.context_len > lim.max_context_len))
    fail(ErrorCode::InvalidArgument, "encoder_hidden_states length " + std::to_string(in.context_len) +
                                         " out of range [1, " + std::to_string(lim.max_context_len) + "]");
  if (g.context < 0 && in.context_len != 0)
    fail(ErrorCode::InvalidArgument, "this network takes no encoder_hidden_states");
  MemoryPlan p;
  p.n = n; p.h = h; p.w = w; p.context_len = in.context_len; p.seq_len = in.seq_len;
  const size_t nv = g.values.size();
  p.shapes.assign(nv, ValueShape{});
  p.offset.assign(nv, -1);
  p.last_use.assign(nv, -1);
  if (g.sample >= 0) p.shapes[g.sample] = {4, n, h, w, g.in_channels};
  if (g.input_ids >= 0) p.shapes[g.input_ids] = {3, n, 1, in.seq_len, 1};
  if (g.timestep >= 0) p.shapes[g.timestep] = {1, n, 1, 1, 1};
  if (g.class_labels >= 0) p.shapes[g.class_labels] = {1, n, 1, 1, 1};
  if (g.context >= 0) p.shapes[g.context] = {3, n, 1, in.context_len, g.context_dim};

  for (size_t k = 0; k < g.nodes.size(); ++k) {
    const Node& nd = g.nodes[k];
    for (int v : nd.inputs) {
      if (v < 0 || size_t(v) >= nv || p.shapes[v].rank == 0) bad(nd, "reads a value that is not computed yet");
      p.last_use[v] = int(k);
    }
    p.shapes[nd.output] = infer(nd, p.shapes);
    uint64_t bytes = 0;
    if (!mul_ok(p.shapes[nd.output].numel(), 4, &bytes) || bytes > lim.max_arena_bytes)
      fail(ErrorCode::InvalidArgument, "activation '" + g.values[nd.output] + "' " + p.shapes[nd.output].str() + " is too large");
    if (const auto* c = std::get_if<Conv2dAttrs>(&nd.attrs)) {
      Conv2dParams cp;
      cp.n = n; cp.h = int(p.shapes[nd.inputs[0]].h); cp.w_in = int(p.shapes[nd.inputs[0]].w);
      cp.cin = c->cin; cp.cout = c->cout; cp.kh = c->kh; cp.kw = c->kw; cp.stride = c->stride;
      cp.pad_top = c->pad_top; cp.pad_left = c->pad_left; cp.pad_bottom = c->pad_bottom; cp.pad_right = c->pad_right;
      p.conv_scratch_elems = std::max<uint64_t>(p.conv_scratch_elems, conv2d_ref_scratch_floats(cp));
    }
  }
  const int out_rank = g.input_ids >= 0 ? 3 : 4;  // text encoders end in [N, L, C], image graphs in NHWC
  if (g.output < 0 || p.shapes[g.output].rank != out_rank) fail(ErrorCode::InvalidModel, "graph has no output value");
  p.last_use[g.output] = int(g.nodes.size());  // the output outlives every node

  ArenaAllocator arena;
  std::vector<std::vector<int>> frees(g.nodes.size());
  for (size_t v = 0; v < nv; ++v)
    if (p.last_use[v] >= 0 && size_t(p.last_use[v]) < g.nodes.size()) frees[p.last_use[v]].push_back(int(v));
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    const Node& nd = g.nodes[k];
    p.offset[nd.output] = int64_t(arena.alloc(p.shapes[nd.output].numel()));
    p.naive_elems += p.shapes[nd.output].numel();
    // Inputs die after the node runs; the output never shares memory with its own inputs.
    for (int v : frees[k])
      if (p.offset[v] >= 0) arena.release(uint64_t(p.offset[v]));
  }
  p.arena_elems = arena.top();
  uint64_t bytes = 0;
  if (!mul_ok(p.arena_elems, 4, &bytes) || bytes > lim.max_arena_bytes)
    fail(ErrorCode::InvalidArgument, "activations need " + std::to_string(bytes >> 20) + " MiB, above the limit");
  return p;
}

void check_graph_inputs(const Graph& g, int num_classes, int n, const void* sample, const void* timesteps,
                        const int32_t* labels, const void* context, const int32_t* input_ids) {
  auto need = [](bool has, const void* p, const std::string& what) {
    if (has && !p) fail(ErrorCode::InvalidArgument, "this network needs " + what);
    if (!has && p) fail(ErrorCode::InvalidArgument, "this network takes no " + what);
  };
  need(g.sample >= 0, sample, "sample");
  need(g.input_ids >= 0, input_ids, "input_ids (token ids)");
  need(g.timestep >= 0, timesteps, "timesteps");
  need(g.context >= 0, context, "encoder_hidden_states (text context)");
  check_class_labels(g, num_classes, n, labels);
}

void check_input_ids(const Graph& g, int n, int len, const int32_t* ids) {
  if (g.input_ids < 0) fail(ErrorCode::InvalidArgument, "this network takes no input_ids");
  if (!ids) fail(ErrorCode::InvalidArgument, "this network needs input_ids (token ids)");
  int vocab = -1;
  for (const Node& nd : g.nodes)
    if (const auto* e = std::get_if<EmbeddingAttrs>(&nd.attrs)) vocab = vocab < 0 ? e->vocab : std::min(vocab, e->vocab);
  if (vocab < 0) fail(ErrorCode::InvalidModel, "text encoder graph has no embedding node");
  const int64_t count = int64_t(n) * len;
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      fail(ErrorCode::InvalidArgument, "token id " + std::to_string(ids[i]) + " at [" + std::to_string(i / len) + ", " +
                                           std::to_string(i % len) + "] is outside the vocabulary [0, " +
                                           std::to_string(vocab) + ")");
}

void check_class_labels(const Graph& g, int num_classes, int n, const int32_t* labels) {
  if (g.class_labels >= 0 && !labels)
    fail(ErrorCode::InvalidArgument, "this model is class-conditional: class labels are required");
  if (g.class_labels < 0 && labels)
    fail(ErrorCode::InvalidArgument, "this model is not class-conditional: class labels are not accepted");
  if (labels)
    for (int i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= num_classes)
        fail(ErrorCode::InvalidArgument, "class label " + std::to_string(labels[i]) + " out of range [0, " +
                                             std::to_string(num_classes - 1) + "]");
}

}  // namespace diffrt
