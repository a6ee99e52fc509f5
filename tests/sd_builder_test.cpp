// Stable Diffusion graph builders at real dimensions: the tensors the UNet2DConditionModel and
// AutoencoderKL-decoder builders expect for the published SD configs equal the state-dict keys and
// shapes diffusers builds (tests/fixtures/sd_real/*_keys_shapes.txt, from diffusers itself), the
// parameter counts match, and the graphs plan at SD sizes. No weights are needed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <random>
#include <regex>
#include <set>

#include "base/error.h"
#include "model/model_file.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "weights_converter/unet2d_condition_builder.h"
#include "weights_converter/vae_decoder_builder.h"
#include "weights_converter/vae_encoder_builder.h"

using namespace diffrt;
using nlohmann::json;

namespace {

json load(const std::string& rel) { return test::load_source_json(rel); }

// The published configs in tests/fixtures/sd_real: the UNet of `name` (sd15, sd21) and the SD VAE.
UNet2DConditionConfig sd_unet_config(const std::string& name) {
  return parse_unet2d_condition_config(load("tests/fixtures/sd_real/" + name + "_unet_config.json"), name);
}
AutoencoderKLConfig sd_vae_config() {
  return parse_autoencoder_kl_config(load("tests/fixtures/sd_real/sd_vae_config.json"), "vae");
}

std::map<std::string, TensorShape> read_keys(const std::string& rel) { return test::read_key_shapes(rel); }
std::string diff(const std::map<std::string, TensorShape>& want, const std::map<std::string, TensorShape>& got) {
  return test::shape_map_diff(want, got);
}

template <class A>
std::vector<const A*> attrs_of(const Graph& g) {
  std::vector<const A*> v;
  for (const Node& n : g.nodes)
    if (auto* a = std::get_if<A>(&n.attrs)) v.push_back(a);
  return v;
}

}  // namespace

TEST(SdBuilder, Sd15UNetTensorsEqualDiffusersKeysAndShapes) {
  UNet2DConditionConfig c = sd_unet_config("sd15");
  auto want = read_keys("tests/fixtures/sd_real/sd15_unet_keys_shapes.txt");
  ASSERT_EQ(want.size(), 686u);
  auto got = unet2d_condition_expected_tensors(c);
  EXPECT_EQ(diff(want, got), "");
  EXPECT_EQ(expected_param_count(got), 859520964ull);
}

TEST(SdBuilder, SdVaeDecoderTensorsEqualDiffusersKeysAndShapes) {
  AutoencoderKLConfig c = sd_vae_config();
  auto all = read_keys("tests/fixtures/sd_real/sd_vae_keys_shapes.txt");
  ASSERT_EQ(all.size(), 248u);
  std::map<std::string, TensorShape> want;
  for (const auto& [k, s] : all)
    if (k.rfind("decoder.", 0) == 0 || k.rfind("post_quant_conv.", 0) == 0) want[k] = s;
  auto got = vae_decoder_expected_tensors(c);
  EXPECT_EQ(diff(want, got), "");
  EXPECT_EQ(expected_param_count(got), 49490199ull);
  EXPECT_EQ(expected_param_count(all), 83653863ull);  // the whole AutoencoderKL, as the spec says
}

TEST(SdBuilder, SdVaeEncoderTensorsEqualDiffusersKeysAndShapes) {
  AutoencoderKLConfig c = sd_vae_config();
  std::map<std::string, TensorShape> want;
  for (const auto& [k, s] : read_keys("tests/fixtures/sd_real/sd_vae_keys_shapes.txt"))
    if (k.rfind("encoder.", 0) == 0 || k.rfind("quant_conv.", 0) == 0) want[k] = s;
  auto got = vae_encoder_expected_tensors(c);
  EXPECT_EQ(diff(want, got), "");
  EXPECT_EQ(expected_param_count(got), 83653863ull - 49490199ull);  // the AutoencoderKL less its decoder side
  // 512x512 images -> [1, 64, 64, 8] moments (mean and logvar of 4 latent channels), and odd sizes floor.
  Graph g = build_vae_encoder_graph(c);
  EXPECT_EQ(plan_memory(g, 1, 512, 512).shapes[size_t(g.output)].str(), "[1,64,64,8]");
  EXPECT_EQ(plan_memory(g, 2, 517, 263).shapes[size_t(g.output)].str(), "[2,64,32,8]");
  EXPECT_EQ(attrs_of<AttentionAttrs>(g).size(), 1u);
  EXPECT_EQ(attrs_of<AttentionAttrs>(g)[0]->head_dim, 512);
  Graph back = graph_from_json(graph_to_json(g), "roundtrip");
  EXPECT_EQ(graph_to_json(back), graph_to_json(g));
  // Other block types are refused by name.
  json cfg = load("tests/fixtures/sd_real/sd_vae_config.json");
  cfg["down_block_types"][1] = "AttnDownEncoderBlock2D";
  try {
    build_vae_encoder_graph(parse_autoencoder_kl_config(cfg, "vae"));
    ADD_FAILURE() << "built an encoder with AttnDownEncoderBlock2D";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("AttnDownEncoderBlock2D"), std::string::npos) << e.what();
  }
}

TEST(SdBuilder, Sd15GraphPlansAt64x64WithContext77) {
  UNet2DConditionConfig c = sd_unet_config("sd15");
  Graph g = build_unet2d_condition_graph(c);
  EXPECT_EQ(g.context_dim, 768);
  EXPECT_GE(g.context, 0);
  EXPECT_GE(g.timestep, 0);
  EXPECT_EQ(g.downsample_factor, 8);
  for (int n : {1, 2}) {
    MemoryPlan p = plan_memory(g, PlanInputs{n, 64, 64, 77});
    const ValueShape& o = p.shapes[g.output];
    EXPECT_EQ(o.str(), "[" + std::to_string(n) + ",64,64,4]");
    EXPECT_GT(p.arena_elems, 0u);
    EXPECT_LT(p.arena_elems, p.naive_elems);
  }
  // 16 transformers (2+2+2 down, 1 mid, 3+3+3 up), each with one self- and one cross-attention.
  auto att = attrs_of<AttentionAttrs>(g);
  EXPECT_EQ(att.size(), 32u);
  for (const auto* a : att) {
    EXPECT_EQ(a->heads, 8);
    EXPECT_TRUE(a->head_dim == 40 || a->head_dim == 80 || a->head_dim == 160) << a->head_dim;
    EXPECT_FLOAT_EQ(a->scale, float(1.0 / std::sqrt(double(a->head_dim))));
  }
  EXPECT_EQ(attrs_of<LayerNormAttrs>(g).size(), 48u);
  EXPECT_EQ(attrs_of<GegluAttrs>(g).size(), 16u);
  // The graph survives its own JSON form (what the model file stores).
  Graph back = graph_from_json(graph_to_json(g), "roundtrip");
  EXPECT_EQ(graph_to_json(back), graph_to_json(g));
  // Sizes the network cannot take are refused before planning.
  EXPECT_THROW(plan_memory(g, PlanInputs{1, 60, 64, 77}), Error);
  EXPECT_THROW(plan_memory(g, PlanInputs{1, 64, 64, 0}), Error);
}

TEST(SdBuilder, Sd2StyleConfigHasHeadDim64AndLinearProjections) {
  UNet2DConditionConfig c = sd_unet_config("sd21");
  Graph g = build_unet2d_condition_graph(c);
  EXPECT_EQ(g.context_dim, 1024);
  auto att = attrs_of<AttentionAttrs>(g);
  ASSERT_EQ(att.size(), 32u);
  for (const auto* a : att) EXPECT_EQ(a->head_dim, 64) << a->heads;
  auto t = unet2d_condition_expected_tensors(c);
  EXPECT_EQ(t.at("down_blocks.0.attentions.0.proj_in.weight"), (TensorShape{320, 320}));
  EXPECT_EQ(t.at("up_blocks.3.attentions.2.proj_out.weight"), (TensorShape{320, 320}));
  EXPECT_EQ(t.at("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"), (TensorShape{1280, 1024}));
  MemoryPlan p = plan_memory(g, PlanInputs{2, 96, 96, 77});
  EXPECT_EQ(p.shapes[g.output].str(), "[2,96,96,4]");
  EXPECT_NO_THROW(plan_memory(g, PlanInputs{1, 64, 64, 77}));
}

TEST(SdBuilder, SeveralTransformerLayersPerBlock) {
  json j = load("tests/fixtures/sd_real/sd15_unet_config.json");
  j["transformer_layers_per_block"] = json::array({1, 2, 10, 1});
  UNet2DConditionConfig c = parse_unet2d_condition_config(j, "x");
  auto t = unet2d_condition_expected_tensors(c);
  EXPECT_TRUE(t.count("down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.weight"));
  EXPECT_FALSE(t.count("down_blocks.1.attentions.0.transformer_blocks.2.attn1.to_q.weight"));
  EXPECT_TRUE(t.count("down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2.weight"));
  EXPECT_TRUE(t.count("up_blocks.1.attentions.2.transformer_blocks.9.norm3.bias"));   // level 2, reversed
  EXPECT_TRUE(t.count("up_blocks.2.attentions.0.transformer_blocks.1.norm1.weight"));  // level 1
  EXPECT_TRUE(t.count("mid_block.attentions.0.transformer_blocks.0.norm1.weight"));    // last level: 1
  EXPECT_FALSE(t.count("mid_block.attentions.0.transformer_blocks.1.norm1.weight"));
  EXPECT_NO_THROW(plan_memory(build_unet2d_condition_graph(c), PlanInputs{1, 32, 32, 77}));
}

TEST(SdBuilder, VaeDecoderGraphPlansAndUpscales) {
  AutoencoderKLConfig c = sd_vae_config();
  Graph g = build_vae_decoder_graph(c);
  EXPECT_LT(g.timestep, 0);
  EXPECT_LT(g.context, 0);
  EXPECT_EQ(g.in_channels, 4);
  EXPECT_EQ(g.out_channels, 3);
  ASSERT_FALSE(g.nodes.empty());
  auto* unscale = std::get_if<AffineAttrs>(&g.nodes[0].attrs);
  ASSERT_NE(unscale, nullptr) << "the VAE graph starts by dividing by scaling_factor";
  EXPECT_FLOAT_EQ(unscale->scale, float(1.0 / 0.18215));
  EXPECT_EQ(unscale->shift, 0.0f);
  auto att = attrs_of<AttentionAttrs>(g);
  ASSERT_EQ(att.size(), 1u);
  EXPECT_EQ(att[0]->heads, 1);
  EXPECT_EQ(att[0]->head_dim, 512);
  for (const auto* gn : attrs_of<GroupNormAttrs>(g)) EXPECT_FLOAT_EQ(gn->eps, 1e-6f);
  for (const Node& n : g.nodes)
    for (const auto& [role, t] : n.weights) EXPECT_EQ(t.rfind("vae.", 0), 0u) << n.name << " " << t;
  MemoryPlan p = plan_memory(g, PlanInputs{1, 64, 64, 0});
  EXPECT_EQ(p.shapes[g.output].str(), "[1,512,512,3]");
}

// A small random-weight SD-style UNet built through the real conversion path: fused projections
// are the concatenations of the diffusers tensors, 1x1 conv projections become [C, C].
TEST(SdBuilder, ConvertsFakeWeightsWithFusedProjections) {
  json j = load("tests/fixtures/sd_real/sd15_unet_config.json");
  j["block_out_channels"] = json::array({32, 64});
  j["down_block_types"] = json::array({"CrossAttnDownBlock2D", "DownBlock2D"});
  j["up_block_types"] = json::array({"UpBlock2D", "CrossAttnUpBlock2D"});
  j["norm_num_groups"] = 8;
  j["cross_attention_dim"] = 24;
  j["attention_head_dim"] = 4;
  j["layers_per_block"] = 1;
  UNet2DConditionConfig c = parse_unet2d_condition_config(j, "tiny");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::map<std::string, SafeTensor> w;
  for (const auto& [name, shape] : unet2d_condition_expected_tensors(c)) {
    SafeTensor t;
    t.name = name;
    t.shape = shape;
    std::vector<float> v(t.numel());
    for (float& x : v) x = nd(rng);
    t.bytes.resize(v.size() * 4);
    std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    w[name] = t;
  }
  BuiltModel m = build_unet2d_condition(c, w, DType::F32, true, "tiny");
  std::map<std::string, const TensorBlob*> by;
  for (const auto& t : m.tensors) by[t.name] = &t;
  const std::string p = "down_blocks.0.attentions.0";
  const std::string b = p + ".transformer_blocks.0";
  auto floats = [](const TensorBlob* t) {
    std::vector<float> v(t->bytes.size() / 4);
    std::memcpy(v.data(), t->bytes.data(), t->bytes.size());
    return v;
  };
  ASSERT_TRUE(by.count(b + ".attn1.to_qkv.weight"));
  EXPECT_EQ(by[b + ".attn1.to_qkv.weight"]->shape, (TensorShape{96, 32}));
  std::vector<float> cat;
  for (const char* s : {".attn1.to_q.weight", ".attn1.to_k.weight", ".attn1.to_v.weight"}) {
    auto v = w.at(b + s).to_f32();
    cat.insert(cat.end(), v.begin(), v.end());
  }
  EXPECT_EQ(floats(by[b + ".attn1.to_qkv.weight"]), cat);
  ASSERT_TRUE(by.count(b + ".attn2.to_kv.weight"));
  EXPECT_EQ(by[b + ".attn2.to_kv.weight"]->shape, (TensorShape{64, 24}));
  EXPECT_TRUE(by.count(b + ".attn2.to_q.weight"));
  EXPECT_FALSE(by.count(b + ".attn2.to_k.weight"));
  EXPECT_FALSE(by.count(b + ".attn1.to_q.weight"));
  EXPECT_EQ(by[p + ".proj_in.weight"]->shape, (TensorShape{32, 32}));
  EXPECT_EQ(floats(by[p + ".proj_in.weight"]), w.at(p + ".proj_in.weight").to_f32());
  EXPECT_EQ(by["conv_in.weight"]->shape, (TensorShape{32, 3, 3, 4}));  // KRSC
  // Every tensor a node names exists, and nothing unreferenced is stored.
  std::set<std::string> used;
  for (const Node& n : m.graph.nodes)
    for (const auto& [role, t] : n.weights) {
      EXPECT_TRUE(by.count(t)) << n.name << " " << t;
      used.insert(t);
    }
  EXPECT_EQ(used.size(), m.tensors.size());
  // The linear layers without bias are exactly q/k/v.
  for (const Node& n : m.graph.nodes)
    if (std::holds_alternative<LinearAttrs>(n.attrs) && !n.weights.count("bias")) {
      const bool qkv = n.name.find(".to_qkv") != std::string::npos || n.name.find(".to_kv") != std::string::npos ||
                       n.name.find(".attn2.to_q") != std::string::npos;
      EXPECT_TRUE(qkv) << n.name;
    }
  EXPECT_NO_THROW(plan_memory(m.graph, PlanInputs{2, 16, 16, 5}));
}
