// Shape inference and the activation arena planner on real UNet graphs.
#include <gtest/gtest.h>

#include "kernels/common/error.h"
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
