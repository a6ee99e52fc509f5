// Shape inference and activation memory planning for a graph at a given batch and resolution.
// Every value gets one offset in a single arena (liveness-based first-fit: a value's block is free
// again after its last reader runs), so no allocation happens while sampling. Graph inputs
// (sample, timestep, class_labels, encoder_hidden_states, input_ids) live outside the arena.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/graph.h"

namespace diffrt {

struct ValueShape {
  int rank = 0;  // 1: [N], 2: [N, C], 3: [N, L, C] (stored as h = 1, w = L), 4: [N, H, W, C]
  int64_t n = 0, h = 1, w = 1, c = 1;
  uint64_t numel() const { return uint64_t(n) * uint64_t(h) * uint64_t(w) * uint64_t(c); }
  std::string str() const;
};

// What a run is planned for: batch, spatial size of "sample", the token count of
// "encoder_hidden_states" (0 for graphs without a text context) and the token count of "input_ids"
// (text encoders, which have no sample: h and w are ignored there; 0 for other graphs).
struct PlanInputs {
  int n = 0, h = 0, w = 0;
  int context_len = 0;
  int seq_len = 0;
};

struct MemoryPlan {
  int n = 0, h = 0, w = 0, context_len = 0, seq_len = 0;
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
  int max_context_len = 65536;
  uint64_t max_arena_bytes = uint64_t(64) << 30;
};

// Throws Error(InvalidArgument) for sizes the network cannot take (H/W not multiples of the
// downsample factor, zero or absurd sizes) and Error(InvalidModel) for inconsistent graphs.
MemoryPlan plan_memory(const Graph& g, const PlanInputs& in, const PlanLimits& limits = {});
inline MemoryPlan plan_memory(const Graph& g, int n, int h, int w, const PlanLimits& limits = {}) {
  return plan_memory(g, PlanInputs{n, h, w, 0}, limits);
}

// Checks a run's host-side inputs against what graph `g` takes (each present exactly when the graph
// has that input) and the n class labels against [0, num_classes). Both backends call it before
// touching any input; throws Error(InvalidArgument).
void check_graph_inputs(const Graph& g, int num_classes, int n, const void* sample, const void* timesteps,
                        const int32_t* labels, const void* context, const int32_t* input_ids = nullptr);
// Token ids [n, len] of a text encoder against the vocabulary of its embedding nodes (ids must lie in
// [0, vocab)); throws Error(InvalidArgument) naming the first bad id and its position.
void check_input_ids(const Graph& g, int n, int len, const int32_t* ids);
// The class-label part alone (labels may be null: required exactly when g has a class_labels input).
void check_class_labels(const Graph& g, int num_classes, int n, const int32_t* labels);

}  // namespace diffrt
