// Per-node timings of one graph execution, written as a Chrome trace (chrome://tracing, ui.perfetto.dev) and
// summarised per op type (diffrt profile / diffrt bench --trace). Backend-independent: the CUDA profiler
// (runtime/cuda/cuda_profile.h) measures with CUDA events, the CPU one (runtime/cpu_profile.h) with
// std::chrono; both fill a ProfiledGraph.
//
// Trace format (the "JSON Object Format" of the Trace Event spec, which Perfetto reads):
//   {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}
// One complete event ("ph": "X") per node: name = node name, cat = op, ts/dur in microseconds, pid = 1,
// tid = the graph's index + 1 (named by a "thread_name" metadata event: "unet", "vae_decode"), and args:
// node index, op, input and output shapes, bytes, flops, achieved GB/s and TFLOP/s, and (when ceilings were
// measured) the roofline fraction max(bytes / copy_bw, flops / gemm_rate) / time. Graphs are laid out one
// after the other on the time axis; within a graph, ts is the sum of the previous nodes' durations (a
// compacted timeline: gaps the profiler introduced are not shown).
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "runtime/graph_cost.h"
#include "runtime/plan.h"

namespace diffrt {

struct ProfiledGraph {
  std::string label;               // "unet", "vae_decode"
  const Graph* graph = nullptr;
  MemoryPlan plan;
  std::vector<NodeCost> cost;      // per node (graph_cost(...).nodes)
  std::vector<double> node_us;     // per node: duration in microseconds (median over the repetitions)
  int repetitions = 0;
  double total_us() const;
};

// Measured machine ceilings for the roofline fraction; 0 = not measured.
struct Ceilings {
  double copy_gbps = 0;     // device copy bandwidth, GB/s (read + write)
  double gemm_tflops = 0;   // dense GEMM rate in the model dtype, TFLOP/s
};

// What `diffrt profile` measured: the graphs node by node, and the machine's ceilings (CUDA; zero otherwise).
struct ProfileRun {
  std::vector<ProfiledGraph> graphs;
  Ceilings ceilings;
};

// The whole trace document. `meta` goes to "otherData" (environment, command, options).
nlohmann::json chrome_trace(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings,
                            const nlohmann::json& meta);

// Per-op summary (op, nodes, total ms, share of the graph, mean us, GB/s, TFLOP/s, roofline %) followed by the
// `top` slowest nodes, one table per graph, as plain text for stderr.
std::string op_summary_table(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings, int top = 10);

// The same per-op summary as JSON: [{graph, total_ms, flops, ops: [{op, nodes, ms, share, gbps, tflops}]}].
nlohmann::json op_summary_json(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings);

// Median of a sample (0 when empty); p in [0, 1] for percentiles (linear interpolation, as numpy).
double percentile(std::vector<double> v, double p);

}  // namespace diffrt
