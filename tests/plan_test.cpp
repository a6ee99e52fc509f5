// Shape inference and the activation arena planner on real UNet graphs.
#include <gtest/gtest.h>

#include "base/error.h"
#include "runtime/plan.h"
#include "weights_converter/unet2d_builder.h"

using namespace diffrt;

namespace {

UNet2DConfig cifar10_config() {  // the published google/ddpm-cifar10-32 architecture
  UNet2DConfig c;
  c.block_out_channels = {128, 256, 256, 256};
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  c.attention_head_dim = 0;
  c.downsample_padding = 0;
  c.flip_sin_to_cos = false;
  c.freq_shift = 1;
  c.norm_eps = 1e-6;
  return c;
}

// Every pair of values whose lifetimes overlap must occupy disjoint arena ranges.
void check_no_overlap(const Graph& g, const MemoryPlan& p) {
  std::vector<int> def(g.values.size(), -1);
  for (size_t k = 0; k < g.nodes.size(); ++k) def[g.nodes[k].output] = int(k);
  for (size_t a = 0; a < g.values.size(); ++a) {
    if (p.offset[a] < 0) continue;
    for (size_t b = a + 1; b < g.values.size(); ++b) {
      if (p.offset[b] < 0) continue;
      bool live_together = def[a] <= p.last_use[b] && def[b] <= p.last_use[a];
      if (!live_together) continue;
      int64_t a0 = p.offset[a], a1 = a0 + int64_t(p.shapes[a].numel());
      int64_t b0 = p.offset[b], b1 = b0 + int64_t(p.shapes[b].numel());
      ASSERT_TRUE(a1 <= b0 || b1 <= a0) << g.values[a] << " overlaps " << g.values[b];
    }
  }
}

}  // namespace

TEST(Plan, Cifar10ShapesAndArena) {
  Graph g = build_unet2d_graph(cifar10_config());
  MemoryPlan p = plan_memory(g, 2, 32, 32);
  EXPECT_EQ(p.shapes[g.output].str(), "[2,32,32,3]");
  EXPECT_EQ(g.downsample_factor, 8);
  // The skip concat of up_blocks.2.resnets.2 is 256 (h) + 128 (skip) = 384 channels at 16x16.
  int cat = g.value_id("up_blocks.2.resnets.2.concat");
  ASSERT_GE(cat, 0);
  EXPECT_EQ(p.shapes[cat].str(), "[2,16,16,384]");
  check_no_overlap(g, p);
  EXPECT_LT(p.arena_elems * 3, p.naive_elems) << "liveness reuse should save most of the memory";
}

TEST(Plan, AnyBatchAndResolutionTheNetworkAccepts) {
  Graph g = build_unet2d_graph(cifar10_config());
  for (auto [n, h, w] : {std::tuple{1, 8, 8}, {3, 64, 32}, {1, 8, 120}, {5, 40, 24}}) {
    MemoryPlan p = plan_memory(g, n, h, w);
    EXPECT_EQ(p.shapes[g.output].n, n);
    EXPECT_EQ(p.shapes[g.output].h, h);
    EXPECT_EQ(p.shapes[g.output].w, w);
    check_no_overlap(g, p);
  }
}

TEST(Plan, RejectsSizesTheNetworkCannotTake) {
  Graph g = build_unet2d_graph(cifar10_config());
  EXPECT_THROW(plan_memory(g, 1, 12, 16), Error);  // not a multiple of 8
  EXPECT_THROW(plan_memory(g, 0, 32, 32), Error);
  EXPECT_THROW(plan_memory(g, 1, 0, 32), Error);
  EXPECT_THROW(plan_memory(g, 100000, 32, 32), Error);
  PlanLimits small;
  small.max_arena_bytes = 1 << 20;
  EXPECT_THROW(plan_memory(g, 64, 256, 256, small), Error);
}

TEST(Plan, ScaleShiftMidAttentionHasNoNorm) {
  UNet2DConfig c = cifar10_config();
  c.scale_shift = true;
  Graph g = build_unet2d_graph(c);
  EXPECT_EQ(g.value_id("mid_block.attentions.0.group_norm"), -1);
  EXPECT_GE(g.value_id("down_blocks.1.attentions.0.group_norm"), 0);
  c.attn_norm_num_groups = 8;
  EXPECT_GE(build_unet2d_graph(c).value_id("mid_block.attentions.0.group_norm"), 0);
}

namespace {

// sample -> conv_in (C=8) -> to_q; context [N, L, 6] -> to_kv (16) -> attention(q, kv) -> geglu -> out.
Graph cross_graph() {
  Graph g;
  g.values = {"sample", "timestep", "encoder_hidden_states", "h", "q", "kv", "attn", "out"};
  g.sample = 0; g.timestep = 1; g.context = 2; g.context_dim = 6; g.output = 7;
  g.in_channels = 3; g.out_channels = 4;
  auto add = [&](const char* name, OpAttrs a, std::vector<int> in, int out) {
    Node n;
    n.name = name; n.attrs = a; n.inputs = std::move(in); n.output = out;
    g.nodes.push_back(std::move(n));
  };
  Conv2dAttrs c;
  c.cin = 3; c.cout = 8;
  add("conv_in", c, {0}, 3);
  add("to_q", LinearAttrs{8, 8, false, 1.0f}, {3}, 4);
  add("to_kv", LinearAttrs{6, 16, false, 1.0f}, {2}, 5);
  add("attn2", AttentionAttrs{2, 4, 0.5f}, {4, 5}, 6);
  add("geglu", GegluAttrs{}, {6}, 7);
  return g;
}

}  // namespace

TEST(Plan, CrossAttentionShapes) {
  Graph g = cross_graph();
  for (int len : {77, 5, 1}) {
    MemoryPlan p = plan_memory(g, PlanInputs{2, 4, 6, len});
    EXPECT_EQ(p.shapes[2].str(), "[2," + std::to_string(len) + ",6]");
    EXPECT_EQ(p.shapes[5].str(), "[2," + std::to_string(len) + ",16]");
    EXPECT_EQ(p.shapes[6].str(), "[2,4,6,8]");  // the query's tokens, heads*head_dim channels
    EXPECT_EQ(p.shapes[7].str(), "[2,4,6,4]");  // geglu halves the last dim
    check_no_overlap(g, p);
  }
}

TEST(Plan, ContextLengthIsRequiredAndBounded) {
  Graph g = cross_graph();
  EXPECT_THROW(plan_memory(g, 1, 4, 4), Error);  // no context length
  EXPECT_THROW(plan_memory(g, PlanInputs{1, 4, 4, 65537}), Error);
  Graph plain = build_unet2d_graph(cifar10_config());
  EXPECT_THROW(plan_memory(plain, PlanInputs{1, 32, 32, 77}), Error);  // takes no context
}

TEST(Plan, CrossAttentionKvMustMatchQuery) {
  Graph g = cross_graph();
  std::get<LinearAttrs>(g.nodes[2].attrs).out = 12;  // kv with 12 != 2*8 channels
  try {
    plan_memory(g, PlanInputs{1, 4, 4, 7});
    FAIL() << "accepted a mis-sized kv";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attn2"), std::string::npos) << e.what();
  }
}

TEST(Plan, GraphInputsArePresentExactlyWhenTaken) {
  Graph g = cross_graph();
  float x = 0;
  EXPECT_NO_THROW(check_graph_inputs(g, 0, 1, &x, &x, nullptr, &x));
  EXPECT_THROW(check_graph_inputs(g, 0, 1, &x, &x, nullptr, nullptr), Error);   // context missing
  EXPECT_THROW(check_graph_inputs(g, 0, 1, &x, nullptr, nullptr, &x), Error);   // timesteps missing
  int32_t label = 0;
  EXPECT_THROW(check_graph_inputs(g, 0, 1, &x, &x, &label, &x), Error);         // not class-conditional
  Graph cls = g;
  cls.class_labels = 1;
  int32_t bad = 10;
  EXPECT_THROW(check_class_labels(cls, 10, 1, &bad), Error);                    // out of range
  EXPECT_NO_THROW(check_class_labels(cls, 11, 1, &bad));
}
