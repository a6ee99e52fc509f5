// Shape inference and activation memory planning for a graph at a given batch and resolution.
// Every value gets one offset in a single arena (liveness-based first-fit: a value's block is free
// again after its last reader runs), so no allocation happens while sampling. Graph inputs
// (sample, timestep, class_labels) live outside the arena.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/graph.h"

namespace diffrt {

struct ValueShape {
  int rank = 0;  // 1: [N], 2: [N, C], 4: [N, H, W, C]
  int64_t n = 0, h = 1, w = 1, c = 1;
  uint64_t numel() const { return uint64_t(n) * uint64_t(h) * uint64_t(w) * uint64_t(c); }
  std::string str() const;
};

struct MemoryPlan {
  int n = 0, h = 0, w = 0;
  std::vector<ValueShape> shapes;   // per value
  std::vector<int64_t> offset;      // per value, in elements; -1 for graph inputs
  uint64_t arena_elems = 0;         // arena size in elements
  uint64_t naive_elems = 0;         // sum of all activations (what the planner saved against)
  uint64_t conv_scratch_elems = 0;  // largest CPU conv scratch needed
  std::vector<int> last_use;        // per value: index of the last node reading it
};

// Limits applied before any allocation (batch, spatial size, arena elements).
struct PlanLimits {
  int max_batch = 4096;
  int max_side = 8192;
  uint64_t max_arena_bytes = uint64_t(64) << 30;
};

// Throws Error(InvalidArgument) for sizes the network cannot take (H/W not multiples of the
// downsample factor, zero or absurd sizes) and Error(InvalidModel) for inconsistent graphs.
MemoryPlan plan_memory(const Graph& g, int n, int h, int w, const PlanLimits& limits = {});

}  // namespace diffrt
