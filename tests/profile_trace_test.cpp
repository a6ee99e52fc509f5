// Chrome trace and per-op summary of a profiled graph (runtime/profile_trace.h), and percentile().
#include <gtest/gtest.h>

#include "runtime/profile_trace.h"

using namespace diffrt;

namespace {

// sample -> conv -> norm(+silu) -> conv(+residual sample) -> out
Graph tiny_graph() {
  Graph g;
  g.values = {"sample", "a", "b", "out"};
  g.sample = 0; g.output = 3; g.in_channels = 4; g.out_channels = 4;
  Conv2dAttrs c;
  c.cin = 4; c.cout = 4;
  g.nodes.push_back(Node{"conv1", c, {0}, 1, {{"weight", "w1"}, {"bias", "b1"}}});
  GroupNormAttrs n;
  n.groups = 2; n.silu = true;
  g.nodes.push_back(Node{"norm", n, {1}, 2, {{"weight", "nw"}, {"bias", "nb"}}});
  g.nodes.push_back(Node{"conv2", c, {2, 0}, 3, {{"weight", "w2"}, {"bias", "b2"}}});
  return g;
}

ProfiledGraph profiled(const Graph& g, std::vector<double> us) {
  ProfiledGraph pg;
  pg.label = "unet";
  pg.graph = &g;
  pg.plan = plan_memory(g, PlanInputs{2, 8, 8, 0});
  pg.cost = graph_cost(g, pg.plan, 2).nodes;
  pg.node_us = std::move(us);
  pg.repetitions = 3;
  return pg;
}

}  // namespace

TEST(ProfileTrace, OneCompleteEventPerNodeOnACompactedTimeline) {
  Graph g = tiny_graph();
  std::vector<ProfiledGraph> gs{profiled(g, {10.0, 2.5, 7.5})};
  Ceilings k;
  k.copy_gbps = 1000;
  k.gemm_tflops = 100;
  nlohmann::json t = chrome_trace(gs, k, {{"command", "diffrt profile x"}});
  ASSERT_TRUE(t["traceEvents"].is_array());
  std::vector<nlohmann::json> x;
  for (const auto& e : t["traceEvents"])
    if (e["ph"] == "X") x.push_back(e);
  ASSERT_EQ(x.size(), 3u);
  EXPECT_EQ(x[0]["name"], "conv1");
  EXPECT_EQ(x[1]["cat"], "group_norm");
  EXPECT_DOUBLE_EQ(x[0]["ts"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(x[1]["ts"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(x[2]["ts"].get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(x[2]["dur"].get<double>(), 7.5);
  const auto& a = x[0]["args"];
  const double flops = 2.0 * 2 * 8 * 8 * 4 * 4 * 9;
  EXPECT_DOUBLE_EQ(a["flops"].get<double>(), flops);
  EXPECT_DOUBLE_EQ(a["tflops"].get<double>(), flops / (10.0 * 1e6));
  EXPECT_EQ(a["output"], "[2,8,8,4]");
  EXPECT_EQ(a["inputs"][0], "sample [2,8,8,4]");
  EXPECT_TRUE(a.contains("roofline_frac"));
  EXPECT_EQ(x[2]["args"]["inputs"].size(), 2u);
  EXPECT_EQ(t["otherData"]["command"], "diffrt profile x");
  EXPECT_EQ(t["otherData"]["graphs"][0]["nodes"], 3);
  EXPECT_DOUBLE_EQ(t["otherData"]["graphs"][0]["total_us"].get<double>(), 20.0);
  // thread name metadata for the graph's track
  bool named = false;
  for (const auto& e : t["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == "unet") named = true;
  EXPECT_TRUE(named);
}

TEST(ProfileTrace, SummaryGroupsByOpAndSharesAddUp) {
  Graph g = tiny_graph();
  std::vector<ProfiledGraph> gs{profiled(g, {10.0, 2.5, 7.5})};
  nlohmann::json s = op_summary_json(gs, Ceilings{});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_DOUBLE_EQ(s[0]["total_ms"].get<double>(), 0.02);
  ASSERT_EQ(s[0]["ops"].size(), 2u);
  EXPECT_EQ(s[0]["ops"][0]["op"], "conv2d");  // slowest first
  EXPECT_EQ(s[0]["ops"][0]["nodes"], 2);
  EXPECT_DOUBLE_EQ(s[0]["ops"][0]["share"].get<double>() + s[0]["ops"][1]["share"].get<double>(), 1.0);
  EXPECT_FALSE(s[0]["ops"][0].contains("roofline_frac"));
  const std::string table = op_summary_table(gs, Ceilings{}, 2);
  EXPECT_NE(table.find("conv2d"), std::string::npos);
  EXPECT_NE(table.find("slowest nodes"), std::string::npos);
  EXPECT_NE(table.find("conv1"), std::string::npos);
}

TEST(ProfileTrace, RefusesTimingsOfTheWrongLength) {
  Graph g = tiny_graph();
  std::vector<ProfiledGraph> gs{profiled(g, {1.0, 2.0})};
  EXPECT_THROW(chrome_trace(gs, Ceilings{}, {}), std::invalid_argument);
}

TEST(ProfileTrace, PercentileInterpolatesLikeNumpy) {
  EXPECT_EQ(percentile({}, 0.5), 0.0);
  EXPECT_DOUBLE_EQ(percentile({3, 1, 2}, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 0.9), 3.7);
  EXPECT_DOUBLE_EQ(percentile({5, 1}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(percentile({5, 1}, 1.0), 5.0);
}
