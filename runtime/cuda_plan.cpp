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

namespace {

// Explicit-padding scratch of asymmetric convolutions and silu(x) scratch of linear layers (per graph).
struct Scratch {
  uint64_t conv_pad = 0, silu = 0;
};
Scratch scratch_for(const Graph& g, const MemoryPlan& plan, uint64_t es) {
  Scratch s;
  for (const Node& nd : g.nodes) {
    const ValueShape& in = plan.shapes[size_t(nd.inputs[0])];
    if (const auto* c = std::get_if<Conv2dAttrs>(&nd.attrs)) {
      if (c->pad_top != c->pad_bottom || c->pad_left != c->pad_right)
        s.conv_pad = std::max<uint64_t>(s.conv_pad, uint64_t(in.n) * uint64_t(in.h + c->pad_top + c->pad_bottom) *
                                                        uint64_t(in.w + c->pad_left + c->pad_right) * uint64_t(c->cin) * es);
    } else if (const auto* l = std::get_if<LinearAttrs>(&nd.attrs)) {
      if (l->silu_input) s.silu = std::max<uint64_t>(s.silu, in.numel() * es);
    }
  }
  return s;
}

}  // namespace

CudaMemoryReport cuda_memory_report(const ModelFile& mf, DType dtype, int batch, int h, int w, bool cfg, int steps,
                                    int context_len, const PlanLimits& limits) {
  if (batch < 1) fail(ErrorCode::InvalidArgument, "batch must be >= 1");
  if (steps < 1) fail(ErrorCode::InvalidArgument, "steps must be >= 1");
  const Graph& g = mf.graph;
  CudaMemoryReport r;
  r.dtype = dtype;
  r.model_batch = cfg ? 2 * batch : batch;
  r.context_len = context_len;
  const MemoryPlan plan = plan_memory(g, PlanInputs{r.model_batch, h, w, context_len}, limits);  // checks context_len
  const uint64_t es = dtype_size(dtype);
  for (const TensorInfo& t : mf.tensors) r.weight_bytes += align_bytes(checked_bytes(t.numel(), es, "weights"));
  r.arena_bytes = plan_device_arena(g, plan, dtype).bytes;
  for (const Node& nd : g.nodes) r.naive_activation_bytes += align_bytes(plan.shapes[size_t(nd.output)].numel() * es);
  const uint64_t nm = uint64_t(r.model_batch);
  r.input_bytes = align_bytes(plan.shapes[size_t(g.sample)].numel() * es);
  if (g.timestep >= 0) r.input_bytes += align_bytes(nm * 4);
  if (g.class_labels >= 0) r.input_bytes += align_bytes(nm * 4);
  if (g.context >= 0) r.input_bytes += align_bytes(checked_bytes(plan.shapes[size_t(g.context)].numel(), es, "context"));
  r.group_norm_workspace_bytes = group_norm_workspace_for(g, plan);

  Scratch sc = scratch_for(g, plan, es);
  MemoryPlan vplan;
  if (mf.vae.present()) {
    const Graph& vg = mf.vae.graph;
    vplan = plan_memory(vg, PlanInputs{batch, h, w, 0}, limits);
    r.vae_arena_bytes = plan_device_arena(vg, vplan, dtype).bytes;
    r.vae_input_bytes = align_bytes(vplan.shapes[size_t(vg.sample)].numel() * es);
    r.vae_group_norm_workspace_bytes = group_norm_workspace_for(vg, vplan);
    const Scratch vs = scratch_for(vg, vplan, es);
    sc.conv_pad = std::max(sc.conv_pad, vs.conv_pad);
    sc.silu = std::max(sc.silu, vs.silu);
  }
  r.conv_workspace_bytes = (uint64_t(256) << 20) + sc.conv_pad;  // CudnnConv::Options::max_workspace_bytes default
  r.gemm_workspace_bytes = (uint64_t(32) << 20) + sc.silu;       // CublasLtContext::Options::workspace_bytes default
  const uint64_t state = plan.shapes[size_t(g.sample)].numel() / nm * uint64_t(batch) * 4;  // x: [B,H,W,C] fp32
  r.sampler_bytes = align_bytes(state) + align_bytes(uint64_t(steps) * sizeof(StepCoeffs)) + align_bytes(uint64_t(steps) * 4) +
                    kDeviceAlignBytes;
  r.total_bytes = r.weight_bytes + r.arena_bytes + r.input_bytes + r.group_norm_workspace_bytes +
                  r.conv_workspace_bytes + r.gemm_workspace_bytes + r.sampler_bytes;
  if (mf.vae.present())
    r.vae_total_bytes = r.weight_bytes + r.conv_workspace_bytes + r.gemm_workspace_bytes + r.vae_arena_bytes +
                        r.vae_input_bytes + r.vae_group_norm_workspace_bytes;
  r.peak_bytes = std::max(r.total_bytes, r.vae_total_bytes);
  return r;
}

}  // namespace diffrt
