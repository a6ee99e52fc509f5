// Chrome trace and per-op summaries of profiled graphs (contracts in profile_trace.h). Tested by
// tests/profile_trace_test.cpp and, through the CLI, tests/cli/bench_cli_test.sh.
#include "runtime/profile_trace.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <sstream>

namespace diffrt {

namespace {

double gbps(uint64_t bytes, double us) { return us > 0 ? double(bytes) / (us * 1e3) : 0.0; }
double tflops(double flops, double us) { return us > 0 ? flops / (us * 1e6) : 0.0; }
// Fraction of the roofline floor reached: the time the slower of the two ceilings allows over the time taken.
double roof(const NodeCost& c, double us, const Ceilings& k) {
  if (us <= 0) return 0;
  double floor_us = 0;
  if (k.copy_gbps > 0) floor_us = std::max(floor_us, double(c.bytes) / (k.copy_gbps * 1e3));
  if (k.gemm_tflops > 0) floor_us = std::max(floor_us, c.flops / (k.gemm_tflops * 1e6));
  return floor_us / us;
}

struct OpRow {
  std::string op;
  int nodes = 0;
  double us = 0, flops = 0, floor_us = 0;
  uint64_t bytes = 0;
};

std::vector<OpRow> op_rows(const ProfiledGraph& pg, const Ceilings& k) {
  std::map<std::string, OpRow> by;
  for (size_t i = 0; i < pg.node_us.size(); ++i) {
    const std::string op = op_name(pg.graph->nodes[i].attrs);
    OpRow& r = by[op];
    r.op = op;
    r.nodes++;
    r.us += pg.node_us[i];
    r.flops += pg.cost[i].flops;
    r.bytes += pg.cost[i].bytes;
    r.floor_us += roof(pg.cost[i], pg.node_us[i], k) * pg.node_us[i];
  }
  std::vector<OpRow> rows;
  for (auto& [op, r] : by) rows.push_back(r);
  std::sort(rows.begin(), rows.end(), [](const OpRow& a, const OpRow& b) { return a.us > b.us; });
  return rows;
}

void check(const ProfiledGraph& pg) {
  if (!pg.graph || pg.node_us.size() != pg.graph->nodes.size() || pg.cost.size() != pg.graph->nodes.size())
    throw std::invalid_argument("profile: graph '" + pg.label + "' has timings or costs for the wrong number of nodes");
}

}  // namespace

double ProfiledGraph::total_us() const { return std::accumulate(node_us.begin(), node_us.end(), 0.0); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(p, 0.0, 1.0) * double(v.size() - 1);
  const size_t lo = size_t(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

nlohmann::json chrome_trace(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings,
                            const nlohmann::json& meta) {
  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 1}, {"tid", 0}, {"args", {{"name", "diffrt"}}}});
  double base = 0;
  nlohmann::json summary = nlohmann::json::array();
  for (size_t gi = 0; gi < graphs.size(); ++gi) {
    const ProfiledGraph& pg = graphs[gi];
    check(pg);
    const int tid = int(gi) + 1;
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", tid}, {"args", {{"name", pg.label}}}});
    events.push_back(
        {{"name", "thread_sort_index"}, {"ph", "M"}, {"pid", 1}, {"tid", tid}, {"args", {{"sort_index", tid}}}});
    const Graph& g = *pg.graph;
    double t = base;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
      const Node& nd = g.nodes[k];
      const double us = pg.node_us[k];
      nlohmann::json in = nlohmann::json::array();
      for (int v : nd.inputs) in.push_back(g.values[size_t(v)] + " " + pg.plan.shapes[size_t(v)].str());
      nlohmann::json args = {{"node", k}, {"op", op_name(nd.attrs)}, {"inputs", in},
                             {"output", pg.plan.shapes[size_t(nd.output)].str()},
                             {"bytes", pg.cost[k].bytes}, {"weight_bytes", pg.cost[k].weight_bytes},
                             {"flops", pg.cost[k].flops}, {"gbps", gbps(pg.cost[k].bytes, us)},
                             {"tflops", tflops(pg.cost[k].flops, us)}};
      if (ceilings.copy_gbps > 0 || ceilings.gemm_tflops > 0) args["roofline_frac"] = roof(pg.cost[k], us, ceilings);
      events.push_back({{"name", nd.name}, {"cat", op_name(nd.attrs)}, {"ph", "X"}, {"ts", t}, {"dur", us},
                        {"pid", 1}, {"tid", tid}, {"args", std::move(args)}});
      t += us;
    }
    summary.push_back({{"label", pg.label}, {"nodes", g.nodes.size()}, {"total_us", pg.total_us()},
                       {"repetitions", pg.repetitions}, {"batch", pg.plan.n}, {"height", pg.plan.h},
                       {"width", pg.plan.w}, {"context_len", pg.plan.context_len}});
    base = t + 10.0;  // the next graph starts just after this one
  }
  nlohmann::json other = meta.is_object() ? meta : nlohmann::json::object();
  other["graphs"] = summary;
  other["ceilings"] = {{"copy_gbps", ceilings.copy_gbps}, {"gemm_tflops", ceilings.gemm_tflops}};
  other["timeline"] = "compacted: within a graph each node starts where the previous one ended";
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}, {"otherData", std::move(other)}};
}

nlohmann::json op_summary_json(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings) {
  nlohmann::json out = nlohmann::json::array();
  for (const ProfiledGraph& pg : graphs) {
    check(pg);
    const double total = pg.total_us();
    double flops = 0;
    for (const NodeCost& c : pg.cost) flops += c.flops;
    nlohmann::json ops = nlohmann::json::array();
    for (const OpRow& r : op_rows(pg, ceilings)) {
      nlohmann::json o = {{"op", r.op}, {"nodes", r.nodes}, {"ms", r.us / 1e3},
                          {"share", total > 0 ? r.us / total : 0.0}, {"bytes", r.bytes}, {"flops", r.flops},
                          {"gbps", gbps(r.bytes, r.us)}, {"tflops", tflops(r.flops, r.us)}};
      if (ceilings.copy_gbps > 0 || ceilings.gemm_tflops > 0) o["roofline_frac"] = r.us > 0 ? r.floor_us / r.us : 0.0;
      ops.push_back(std::move(o));
    }
    out.push_back({{"graph", pg.label}, {"nodes", pg.graph->nodes.size()}, {"total_ms", total / 1e3},
                   {"flops", flops}, {"tflops", tflops(flops, total)}, {"ops", std::move(ops)}});
  }
  return out;
}

std::string op_summary_table(const std::vector<ProfiledGraph>& graphs, const Ceilings& ceilings, int top) {
  std::ostringstream s;
  char line[512];
  const bool roofs = ceilings.copy_gbps > 0 || ceilings.gemm_tflops > 0;
  for (const ProfiledGraph& pg : graphs) {
    check(pg);
    const double total = pg.total_us();
    double flops = 0;
    for (const NodeCost& c : pg.cost) flops += c.flops;
    std::snprintf(line, sizeof(line),
                  "%s: %zu nodes, batch %d, %dx%d%s: %.3f ms (median of %d), %.1f GFLOP, %.2f TFLOP/s\n",
                  pg.label.c_str(), pg.graph->nodes.size(), pg.plan.n, pg.plan.h, pg.plan.w,
                  pg.plan.context_len ? (", " + std::to_string(pg.plan.context_len) + " tokens").c_str() : "",
                  total / 1e3, pg.repetitions, flops / 1e9, tflops(flops, total));
    s << line;
    std::snprintf(line, sizeof(line), "  %-16s %6s %10s %7s %10s %9s %8s%s\n", "op", "nodes", "total ms", "share",
                  "mean us", "GB/s", "TFLOP/s", roofs ? "  roof%" : "");
    s << line;
    for (const OpRow& r : op_rows(pg, ceilings)) {
      std::snprintf(line, sizeof(line), "  %-16s %6d %10.3f %6.1f%% %10.2f %9.1f %8.2f", r.op.c_str(), r.nodes,
                    r.us / 1e3, total > 0 ? 100.0 * r.us / total : 0.0, r.us / r.nodes, gbps(r.bytes, r.us),
                    tflops(r.flops, r.us));
      s << line;
      if (roofs) {
        std::snprintf(line, sizeof(line), "  %5.1f", r.us > 0 ? 100.0 * r.floor_us / r.us : 0.0);
        s << line;
      }
      s << "\n";
    }
    std::vector<size_t> order(pg.node_us.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return pg.node_us[a] > pg.node_us[b]; });
    if (top > 0 && !order.empty()) {
      s << "  slowest nodes:\n";
      for (size_t i = 0; i < order.size() && int(i) < top; ++i) {
        const size_t k = order[i];
        const Node& nd = pg.graph->nodes[k];
        std::snprintf(line, sizeof(line), "    %9.2f us %5.1f%%  %-14s %-48s -> %-18s %8.1f GB/s %7.2f TFLOP/s\n",
                      pg.node_us[k], total > 0 ? 100.0 * pg.node_us[k] / total : 0.0, op_name(nd.attrs),
                      nd.name.c_str(), pg.plan.shapes[size_t(nd.output)].str().c_str(),
                      gbps(pg.cost[k].bytes, pg.node_us[k]), tflops(pg.cost[k].flops, pg.node_us[k]));
        s << line;
      }
    }
  }
  return s.str();
}

}  // namespace diffrt
