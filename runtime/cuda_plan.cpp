// Device memory planning without CUDA calls (contract in cuda_plan.h). Tested by tests/cuda_plan_test.cpp.
#include "runtime/cuda_plan.h"

#include <algorithm>
#include <map>

#include "base/checked_math.h"
#include "base/error.h"
#include "kernels/conv/conv.h"
#include "kernels/gemm/gemm.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/scheduler_step/scheduler_step.h"

namespace diffrt {
namespace {

uint64_t align_bytes(uint64_t v) { return (v + kDeviceAlignBytes - 1) / kDeviceAlignBytes * kDeviceAlignBytes; }

// First-fit over a growing arena, in bytes (the same policy as the CPU planner's element allocator).
class ByteArena {
 public:
  uint64_t alloc(uint64_t size) {
    size = align_bytes(std::max<uint64_t>(size, 1));
    uint64_t pos = 0;
    for (const auto& [off, len] : live_) {
      if (off >= pos && off - pos >= size) break;
      pos = std::max(pos, off + len);
    }
    live_.emplace(pos, size);
    top_ = std::max(top_, pos + size);
    return pos;
  }
  void release(uint64_t off) { live_.erase(off); }
  uint64_t top() const { return top_; }

 private:
  std::map<uint64_t, uint64_t> live_;
  uint64_t top_ = 0;
};

uint64_t checked_bytes(uint64_t elems, uint64_t es, const char* what) {
  uint64_t b = 0;
  if (!mul_ok(elems, es, &b)) fail(ErrorCode::InvalidArgument, std::string(what) + ": size overflows");
  return b;
}

}  // namespace

DeviceArenaPlan plan_device_arena(const Graph& g, const MemoryPlan& p, DType dtype) {
  const uint64_t es = dtype_size(dtype);
  DeviceArenaPlan out;
  out.byte_offset.assign(g.values.size(), -1);
  std::vector<std::vector<int>> frees(g.nodes.size());
  for (size_t v = 0; v < g.values.size(); ++v)
    if (p.last_use[v] >= 0 && size_t(p.last_use[v]) < g.nodes.size()) frees[size_t(p.last_use[v])].push_back(int(v));
  ByteArena arena;
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    const int o = g.nodes[k].output;
    out.byte_offset[size_t(o)] = int64_t(arena.alloc(checked_bytes(p.shapes[size_t(o)].numel(), es, "activation")));
    for (int v : frees[k])  // inputs die after the node runs; never shared with the node's own output
      if (out.byte_offset[size_t(v)] >= 0) arena.release(uint64_t(out.byte_offset[size_t(v)]));
  }
  out.bytes = arena.top();
  return out;
}

uint64_t group_norm_workspace_for(const Graph& g, const MemoryPlan& p) {
  uint64_t most = 0;
  for (const Node& nd : g.nodes)
    if (const auto* a = std::get_if<GroupNormAttrs>(&nd.attrs)) {
      const ValueShape& s = p.shapes[size_t(nd.output)];
      GroupNormParams gp;
      gp.n = int(s.n); gp.hw = int(s.h * s.w); gp.c = int(s.c); gp.groups = a->groups;
      most = std::max<uint64_t>(most, group_norm_workspace_bytes(gp));
    }
  return most;
}

ExecutorBytes cuda_executor_bytes(const Graph& g, const MemoryPlan& p, DType dtype) {
  const uint64_t es = dtype_size(dtype);
  ExecutorBytes b;
  b.arena = std::max<uint64_t>(plan_device_arena(g, p, dtype).bytes, kDeviceAlignBytes);
  const uint64_t n = uint64_t(p.n);
  if (g.sample >= 0) b.inputs += align_bytes(checked_bytes(p.shapes[size_t(g.sample)].numel(), es, "sample"));
  if (g.input_ids >= 0) b.inputs += align_bytes(checked_bytes(p.shapes[size_t(g.input_ids)].numel(), 4, "input_ids"));
  if (g.timestep >= 0) b.inputs += align_bytes(n * 4);
  if (g.class_labels >= 0) b.inputs += align_bytes(n * 4);
  if (g.context >= 0) b.inputs += align_bytes(checked_bytes(p.shapes[size_t(g.context)].numel(), es, "context"));
  b.group_norm_workspace = group_norm_workspace_for(g, p);
  return b;
}

ContextScratch cuda_context_scratch(const Graph& g, const MemoryPlan& plan, DType dtype) {
  const uint64_t es = dtype_size(dtype);
  ContextScratch s;
  for (const Node& nd : g.nodes) {
    const ValueShape& in = plan.shapes[size_t(nd.inputs[0])];
    if (const auto* c = std::get_if<Conv2dAttrs>(&nd.attrs)) {
      if (c->pad_top == c->pad_bottom && c->pad_left == c->pad_right) continue;
      Conv2dParams cp;
      cp.n = int(in.n); cp.h = int(in.h); cp.w_in = int(in.w); cp.cin = c->cin; cp.cout = c->cout;
      cp.kh = c->kh; cp.kw = c->kw; cp.stride = c->stride;
      cp.pad_top = c->pad_top; cp.pad_left = c->pad_left; cp.pad_bottom = c->pad_bottom; cp.pad_right = c->pad_right;
      // CudnnConv pads one batch chunk at a time (the first chunk is the largest).
      const int chunk = conv_batch_chunks(cp).front().count;
      s.conv_pad = std::max(s.conv_pad, checked_bytes(conv_padded_input_elems(cp, chunk), es, "conv padding"));
    } else if (const auto* l = std::get_if<LinearAttrs>(&nd.attrs)) {
      if (l->silu_input) s.silu = std::max<uint64_t>(s.silu, checked_bytes(in.numel(), es, "silu scratch"));
    }
  }
  return s;
}

namespace {

DType graph_dtype(const Graph& g, const CudaMemoryQuery& q) { return q.dtype ? *q.dtype : g.dtype; }

}  // namespace

CudaMemoryReport cuda_memory_report(const ModelFile& mf, const CudaMemoryQuery& q) {
  if (q.batch < 1) fail(ErrorCode::InvalidArgument, "batch must be >= 1");
  if (q.steps < 1) fail(ErrorCode::InvalidArgument, "steps must be >= 1");
  if (q.text_rows < 0) fail(ErrorCode::InvalidArgument, "text_rows must be >= 0");
  if (q.text_rows > 0 && !mf.text_encoder.present())
    fail(ErrorCode::InvalidArgument, "text_rows given, but this model file has no text encoder");
  const Graph& g = mf.graph;
  CudaMemoryReport r;
  r.dtype = graph_dtype(g, q);
  r.vae_dtype = graph_dtype(mf.vae.graph, q);
  r.text_dtype = graph_dtype(mf.text_encoder.graph, q);
  r.model_batch = q.cfg ? 2 * q.batch : q.batch;
  r.context_len = q.context_len;
  const MemoryPlan plan = plan_memory(g, PlanInputs{r.model_batch, q.h, q.w, q.context_len}, q.limits);  // checks context_len
  const uint64_t es = dtype_size(r.dtype);
  for (const TensorInfo& t : mf.tensors)
    r.weight_bytes += align_bytes(checked_bytes(t.numel(), dtype_size(q.dtype ? *q.dtype : t.dtype), "weights"));
  const ExecutorBytes loop = cuda_executor_bytes(g, plan, r.dtype);
  r.arena_bytes = loop.arena;
  for (const Node& nd : g.nodes) r.naive_activation_bytes += align_bytes(plan.shapes[size_t(nd.output)].numel() * es);
  r.input_bytes = loop.inputs;
  r.group_norm_workspace_bytes = loop.group_norm_workspace;

  // The context's scratch buffers grow to the largest any phase needs and stay.
  ContextScratch sc = cuda_context_scratch(g, plan, r.dtype);
  auto widen = [&](const ContextScratch& o) {
    sc.conv_pad = std::max(sc.conv_pad, o.conv_pad);
    sc.silu = std::max(sc.silu, o.silu);
  };
  ExecutorBytes vae, text;
  const bool decode = q.decode && mf.vae.present();
  if (decode) {
    const Graph& vg = mf.vae.graph;
    const MemoryPlan vplan = plan_memory(vg, PlanInputs{q.batch, q.h, q.w, 0}, q.limits);
    vae = cuda_executor_bytes(vg, vplan, r.vae_dtype);
    widen(cuda_context_scratch(vg, vplan, r.vae_dtype));
  }
  if (q.text_rows > 0) {
    const Graph& tg = mf.text_encoder.graph;
    PlanInputs tin;
    tin.n = q.text_rows; tin.h = 1; tin.w = 1;
    tin.seq_len = q.context_len > 0 ? q.context_len : (mf.has_tokenizer ? mf.tokenizer.max_length : 0);
    const MemoryPlan tplan = plan_memory(tg, tin, q.limits);
    text = cuda_executor_bytes(tg, tplan, r.text_dtype);
    widen(cuda_context_scratch(tg, tplan, r.text_dtype));
  }
  r.conv_workspace_bytes = kConvWorkspaceCap + sc.conv_pad;
  r.gemm_workspace_bytes = kGemmWorkspaceBytes + sc.silu;
  const uint64_t nm = uint64_t(r.model_batch);
  const uint64_t state = plan.shapes[size_t(g.sample)].numel() / nm * uint64_t(q.batch) * 4;  // x: [B,H,W,C] fp32
  r.sampler_bytes = align_bytes(state) + align_bytes(uint64_t(q.steps) * sizeof(StepCoeffs)) +
                    align_bytes(uint64_t(q.steps) * 4) + kDeviceAlignBytes;
  const uint64_t shared = r.weight_bytes + r.conv_workspace_bytes + r.gemm_workspace_bytes;
  r.total_bytes = shared + loop.total() + r.sampler_bytes;
  if (decode) {
    r.vae_arena_bytes = vae.arena;
    r.vae_input_bytes = vae.inputs;
    r.vae_group_norm_workspace_bytes = vae.group_norm_workspace;
    r.vae_total_bytes = shared + vae.total();
  }
  if (q.text_rows > 0) {
    r.text_arena_bytes = text.arena;
    r.text_input_bytes = text.inputs + text.group_norm_workspace;
    r.text_total_bytes = shared + text.total();
  }
  r.peak_bytes = std::max({r.total_bytes, r.vae_total_bytes, r.text_total_bytes});
  return r;
}

CudaMemoryReport cuda_memory_report(const ModelFile& mf, DType dtype, int batch, int h, int w, bool cfg, int steps,
                                    int context_len, const PlanLimits& limits) {
  CudaMemoryQuery q;
  q.batch = batch; q.h = h; q.w = w; q.cfg = cfg; q.steps = steps; q.context_len = context_len;
  q.dtype = dtype;
  q.limits = limits;
  return cuda_memory_report(mf, q);
}

}  // namespace diffrt
