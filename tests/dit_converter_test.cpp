// Converting DiT pipelines (tests/fixtures/dit/*/pipeline, made by diffusers 0.27.2 from random weights, and the
// bare transformer folders of tests/fixtures/dit_extra): the model file's graph, conditioning and pipeline sections;
// the DiT-XL/2 key set and parameter counts against diffusers' own list; the per-block embedder copies deduplicated
// only when bit-identical; and every corruption giving an error that names the file, field or tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>

#include "base/atomic_file.h"
#include "base/error.h"
#include "model/model_file.h"
#include "runtime/graph_cost.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"
#include "weights_converter/dit_builder.h"
#include "weights_converter/dit_config.h"
#include "weights_converter/safetensors.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

const char* const kCases[] = {"dit_s8_sigma", "dit_s12_eps", "dit_c10"};

std::string fixture(const std::string& c) { return test::source_path("tests/fixtures/dit/" + c + "/pipeline"); }

std::string copy_fixture(const std::string& c) { return test::copy_tree(fixture(c), "ditconv_" + c, "pipeline"); }

using test::convert, test::convert_error, test::load_json, test::save_json;

void expect_error(const std::pair<ErrorCode, std::string>& e, ErrorCode code, std::initializer_list<const char*> parts) {
  EXPECT_EQ(int(e.first), int(code)) << e.second;
  for (const char* p : parts) EXPECT_NE(e.second.find(p), std::string::npos) << "'" << p << "' not in: " << e.second;
}

using test::edit_weights, test::has_warning;

template <class A>
int count_ops(const Graph& g) {
  int n = 0;
  for (const Node& nd : g.nodes) n += std::holds_alternative<A>(nd.attrs);
  return n;
}

const Node* node_named(const Graph& g, const std::string& name) {
  for (const Node& nd : g.nodes)
    if (nd.name == name) return &nd;
  return nullptr;
}

using test::read_key_shapes;

DiTConfig xl2_config(const char* key = "transformer_256") {
  const json pub = load_json(test::source_path("tests/fixtures/dit/published_configs.json"));
  return parse_dit_config(pub[key], std::string("published_configs.json ") + key);
}

}  // namespace

TEST(DiTConverter, ConvertsTheFixturePipelines) {
  for (const char* c : kCases) {
    SCOPED_TRACE(c);
    const std::string out = test::temp_dir("ditconv_ok") + "/m.drt";
    ConvertReport r = convert(fixture(c), out);
    EXPECT_EQ(r.family, "dit");
    EXPECT_FALSE(r.vae_source.empty());
    ModelFile mf = read_model_file(out);
    const json tcfg = load_json(fixture(c) + "/transformer/config.json");
    EXPECT_EQ(mf.family, "dit");
    EXPECT_EQ(mf.config, tcfg);
    EXPECT_EQ(mf.graph.in_channels, 4);
    EXPECT_EQ(mf.graph.out_channels, tcfg["out_channels"].get<int>());
    EXPECT_EQ(mf.graph.downsample_factor, 2);
    EXPECT_GE(mf.graph.class_labels, 0);
    ASSERT_TRUE(mf.vae.present());
    EXPECT_EQ(mf.vae.graph.in_channels, 4);
    EXPECT_EQ(mf.scheduler["_class_name"], "DDIMScheduler");
    EXPECT_EQ(mf.provenance["source_weights"], "transformer/diffusion_pytorch_model.safetensors");
    // Pipeline semantics for the sampler.
    EXPECT_EQ(mf.pipeline.class_name, "DiTPipeline");
    EXPECT_EQ(int(mf.pipeline.cfg_order), int(CfgOrder::CondFirst));
    EXPECT_EQ(mf.pipeline.drop_extra_channels, mf.graph.out_channels == 8);
    EXPECT_FALSE(mf.pipeline.id2label.empty());
    const int rows = tcfg["num_embeds_ada_norm"].get<int>() + 1;
    EXPECT_EQ(mf.conditioning.num_classes, rows);
    EXPECT_EQ(mf.conditioning.null_class, rows > 1000 ? 1000 : -1);
    EXPECT_EQ(has_warning(r, "IndexError"), rows <= 1000);
    // Plans at the config size with the 2B batch of guidance.
    const int s = tcfg["sample_size"].get<int>();
    MemoryPlan plan = plan_memory(mf.graph, PlanInputs{4, s, s, 0});
    EXPECT_EQ(plan.shapes[size_t(mf.graph.output)].str(),
              "[4," + std::to_string(s) + "," + std::to_string(s) + "," + std::to_string(mf.graph.out_channels) + "]");
  }
}

TEST(DiTConverter, EmbedderCopiesAreSharedOnlyWhenIdentical) {
  for (const char* c : kCases) {
    SCOPED_TRACE(c);
    const std::string out = test::temp_dir("ditconv_emb") + "/m.drt";
    ConvertReport r = convert(fixture(c), out);
    ModelFile mf = read_model_file(out);
    const bool identical = std::string(c) == "dit_s8_sigma";  // the README's table: hub-like copies
    EXPECT_EQ(count_ops<TimeEmbeddingAttrs>(mf.graph), identical ? 1 : 2);
    EXPECT_EQ(node_named(mf.graph, "adaln_modulation") != nullptr, identical);
    EXPECT_EQ(mf.find("adaln_modulation.weight") != nullptr, identical);
    EXPECT_EQ(mf.find("transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight") != nullptr, !identical);
    EXPECT_EQ(has_warning(r, "differ"), !identical);
  }
  // One bit of block 1's copy in the hub-like fixture is enough to keep the copies apart.
  const std::string dir = copy_fixture("dit_s8_sigma");
  edit_weights(dir + "/transformer/diffusion_pytorch_model.safetensors", [](auto& w) {
    w.at("transformer_blocks.1.norm1.emb.timestep_embedder.linear_2.bias").bytes[0] ^= 1;
  });
  const std::string out = test::temp_dir("ditconv_emb1") + "/m.drt";
  convert(dir, out);
  EXPECT_EQ(count_ops<TimeEmbeddingAttrs>(read_model_file(out).graph), 2);
}

TEST(DiTConverter, StoredTensorsComeFromTheCheckpoint) {
  const std::string out = test::temp_dir("ditconv_rt") + "/m.drt";
  convert(fixture("dit_s8_sigma"), out);
  ModelFile mf = read_model_file(out);
  SafeTensorsFile st = read_safetensors(fixture("dit_s8_sigma") + "/transformer/diffusion_pytorch_model.safetensors");
  auto stored = [&](const std::string& name) {
    const TensorInfo* t = mf.find(name);
    EXPECT_NE(t, nullptr) << name;
    std::vector<float> v(t ? t->numel() : 0);
    if (t) to_f32(t->dtype, mf.tensor_data(*t), v.data(), v.size());
    return v;
  };
  // Patch conv: OIHW [24, 4, 2, 2] -> KRSC [24, 2, 2, 4].
  const std::vector<float> w = st.tensors.at("pos_embed.proj.weight").to_f32(), k = stored("pos_embed.proj.weight");
  for (int o = 0; o < 24; ++o)
    for (int c = 0; c < 4; ++c)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x) ASSERT_EQ(k[size_t(((o * 2 + y) * 2 + x) * 4 + c)], w[size_t(((o * 4 + c) * 2 + y) * 2 + x)]);
  // Fused modulation: block 0's rows, block 1's rows, then proj_out_1's.
  const std::vector<float> m = stored("adaln_modulation.weight");
  std::vector<float> want;
  for (const char* n : {"transformer_blocks.0.norm1.linear.weight", "transformer_blocks.1.norm1.linear.weight",
                        "proj_out_1.weight"}) {
    auto v = st.tensors.at(n).to_f32();
    want.insert(want.end(), v.begin(), v.end());
  }
  EXPECT_EQ(m, want);
  // Fused q/k/v.
  const std::vector<float> qkv = stored("transformer_blocks.1.attn1.to_qkv.bias");
  std::vector<float> qkv_want;
  for (const char* n : {"to_q", "to_k", "to_v"}) {
    auto v = st.tensors.at(std::string("transformer_blocks.1.attn1.") + n + ".bias").to_f32();
    qkv_want.insert(qkv_want.end(), v.begin(), v.end());
  }
  EXPECT_EQ(qkv, qkv_want);
  EXPECT_EQ(mf.find("pos_embed.pos_embed"), nullptr);
}

TEST(DiTConverter, ClassNamesFollowDiTPipelineLabels) {
  const std::string out = test::temp_dir("ditconv_labels") + "/m.drt";
  convert(fixture("dit_c10"), out);
  ModelFile mf = read_model_file(out);
  // model_index.json order, as written.
  ASSERT_EQ(mf.pipeline.id2label.size(), 10u);
  EXPECT_EQ(mf.pipeline.id2label[0], std::make_pair(0, std::string("tench, Tinca tinca")));
  EXPECT_EQ(mf.pipeline.id2label[9].first, 9);
  const auto ids = class_label_ids(mf.pipeline);
  EXPECT_EQ(ids.at("crane"), 8);  // ids 4 and 8 are both "crane": the later one wins, as pipe.labels
  EXPECT_EQ(ids.at("Tinca tinca"), 0);
  EXPECT_EQ(ids.at("toilet paper"), 9);
  EXPECT_EQ(class_label_id(mf.pipeline, " golden retriever "), 3);
  EXPECT_EQ(class_label_id(mf.pipeline, "golden"), -1);
  // The fixture records diffusers' own pipe.labels: every entry must agree.
  const json meta = load_json(test::source_path("tests/fixtures/dit/dit_c10/meta.json"));
  ASSERT_TRUE(meta.contains("pipeline_labels")) << "meta.json lacks pipeline_labels";
  size_t checked = 0;
  for (auto it = meta["pipeline_labels"].begin(); it != meta["pipeline_labels"].end(); ++it, ++checked)
    EXPECT_EQ(ids.at(it.key()), it.value().get<int>()) << it.key();
  EXPECT_EQ(checked, ids.size());
  // The hub-like fixture: ImageNet's "crane" at 134 and 517 -> 517.
  const std::string out2 = test::temp_dir("ditconv_labels2") + "/m.drt";
  convert(fixture("dit_s8_sigma"), out2);
  const ModelFile mf2 = read_model_file(out2);
  EXPECT_EQ(class_label_id(mf2.pipeline, "crane"), 517);
  const json meta2 = load_json(test::source_path("tests/fixtures/dit/dit_s8_sigma/meta.json"));
  for (auto it = meta2["pipeline_labels"].begin(); it != meta2["pipeline_labels"].end(); ++it)
    EXPECT_EQ(class_label_id(mf2.pipeline, it.key()), it.value().get<int>()) << it.key();
}

TEST(DiTConverter, NullClassOptions) {
  ConvertOptions opt;
  opt.null_class = 10;  // dit_c10: guide with the learned null row instead of diffusers' failing 1000
  const std::string out = test::temp_dir("ditconv_null") + "/m.drt";
  ConvertReport r = convert(fixture("dit_c10"), out, opt);
  EXPECT_EQ(read_model_file(out).conditioning.null_class, 10);
  EXPECT_TRUE(has_warning(r, "differ from DiTPipeline"));
  opt.null_class = -1;
  convert(fixture("dit_s8_sigma"), out, opt);
  EXPECT_EQ(read_model_file(out).conditioning.null_class, -1);
  opt.null_class = 11;
  expect_error(convert_error(copy_fixture("dit_c10"), opt), ErrorCode::InvalidArgument, {"--null-class 11", "11 rows"});
}

TEST(DiTConverter, BareTransformerFoldersAndExtraConfigs) {
  struct Case {
    const char* dir;
    int out_channels, time_embeddings, patch;
    float interpolation;
  } cases[] = {{"dit_p8_affine", 4, 1, 8, 2.0f}, {"dit_p1_geglu", 8, 2, 1, 0.75f}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dir);
    const std::string out = test::temp_dir("ditconv_bare") + "/m.drt";
    ConvertReport r = convert(test::source_path(std::string("tests/fixtures/dit_extra/") + c.dir + "/transformer"), out);
    EXPECT_EQ(r.family, "dit");
    EXPECT_TRUE(has_warning(r, "no VAE"));
    ModelFile mf = read_model_file(out);
    EXPECT_FALSE(mf.vae.present());
    EXPECT_EQ(mf.graph.out_channels, c.out_channels);
    EXPECT_EQ(mf.graph.downsample_factor, c.patch);
    EXPECT_EQ(count_ops<TimeEmbeddingAttrs>(mf.graph), c.time_embeddings);
    EXPECT_EQ(mf.pipeline.drop_extra_channels, c.out_channels == 8);
    EXPECT_TRUE(mf.pipeline.id2label.empty());
    const auto& pe = std::get<PatchEmbedAttrs>(node_named(mf.graph, "pos_embed")->attrs);
    EXPECT_EQ(pe.patch, c.patch);
    EXPECT_FLOAT_EQ(pe.interpolation_scale, c.interpolation);
  }
  // 1500 classes: DiTPipeline's class 1000 is a real class; the converter still records it as the null class.
  const std::string out = test::temp_dir("ditconv_1500") + "/m.drt";
  convert(test::source_path("tests/fixtures/dit_extra/dit_p1_geglu/transformer"), out);
  EXPECT_EQ(read_model_file(out).conditioning.num_classes, 1501);
  EXPECT_EQ(read_model_file(out).conditioning.null_class, 1000);
}

TEST(DiTConverter, Fp16AndBf16) {
  for (DType dt : {DType::F16, DType::BF16}) {
    ConvertOptions opt;
    opt.dtype = dt;
    const std::string out = test::temp_dir("ditconv_dt") + "/m.drt";
    convert(fixture("dit_s12_eps"), out, opt);
    ModelFile mf = read_model_file(out);
    // The transformer in the asked dtype; the VAE follows diffusers' force_upcast rule (fp16 keeps a
    // force_upcast VAE in fp32; bf16 does not overflow and is kept).
    const bool upcast = dt == DType::F16 && mf.vae.config.value("force_upcast", true);
    for (const TensorInfo& t : mf.tensors) {
      const bool vae = t.name.rfind("vae.", 0) == 0;
      ASSERT_EQ(int(t.dtype), int(vae && upcast ? DType::F32 : dt)) << t.name;
    }
    EXPECT_EQ(int(mf.vae.graph.dtype), int(upcast ? DType::F32 : dt));
  }
}

// ---- DiT-XL/2: key set, parameter counts and FLOPs from the published config (no weights needed) ----

TEST(DiTBuilder, XL2TensorsEqualDiffusersKeysAndShapes) {
  const DiTConfig c = xl2_config();
  EXPECT_EQ(c.dim(), 1152);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);  // no norm_eps in the hub config: the 0.27.2 default
  EXPECT_FLOAT_EQ(c.interpolation_scale, 1.0f);
  const auto want = read_key_shapes("tests/fixtures/dit/dit_xl2_256_keys_shapes.txt");
  ASSERT_EQ(want.size(), 538u);
  const auto got = dit_expected_tensors(c);
  EXPECT_EQ(test::shape_map_diff(want, got), "");
  EXPECT_EQ(expected_param_count(got), 749826464ull);
  // Stored: one embedder copy and the fused modulation linear (a concatenation: same element count).
  EXPECT_EQ(expected_param_count(dit_stored_tensors(c, true)), 674834720ull);
  EXPECT_EQ(expected_param_count(dit_stored_tensors(c, false)), 749826464ull);
  // 512 differs only in sample_size.
  EXPECT_EQ(dit_expected_tensors(xl2_config("transformer_512")), got);
}

TEST(DiTBuilder, XL2GraphPlansAndCountsTheDiTPaperFlops) {
  for (const char* key : {"transformer_256", "transformer_512"}) {
    SCOPED_TRACE(key);
    const DiTConfig c = xl2_config(key);
    const Graph g = build_dit_graph(c, true);
    const int s = c.sample_size;
    const MemoryPlan p = plan_memory(g, PlanInputs{1, s, s, 0});
    EXPECT_EQ(p.shapes[size_t(g.output)].str(), "[1," + std::to_string(s) + "," + std::to_string(s) + ",8]");
    const GraphCost gc = graph_cost(g, p, 2);
    // The DiT paper: 118.6 GFLOPs (multiply-adds) for XL/2 at 256 and 524.6 at 512; we count 2 per multiply-add.
    const double paper = std::string(key) == "transformer_256" ? 118.6e9 : 524.6e9;
    EXPECT_NEAR(gc.flops / (2 * paper), 1.0, 0.005) << gc.flops;
    // The graph JSON round trip accepts the fused modulation width (6*1152*28 + 2*1152 channels).
    const Graph back = graph_from_json(graph_to_json(g), "test");
    EXPECT_EQ(back.nodes.size(), g.nodes.size());
  }
}

// ---- refusals ----

TEST(DiTConverterRefuses, UnsupportedConfigsNameTheField) {
  struct Edit {
    std::function<void(json&)> f;
    ErrorCode code;
    std::vector<const char*> parts;
  } edits[] = {
      {[](json& j) { j["norm_type"] = "ada_norm_single"; }, ErrorCode::Unsupported, {"config.json", "norm_type", "ada_norm_single"}},
      {[](json& j) { j["cross_attention_dim"] = 1152; }, ErrorCode::Unsupported, {"cross_attention_dim"}},
      {[](json& j) { j["activation_fn"] = "geglu-approximate"; }, ErrorCode::Unsupported, {"activation_fn"}},
      {[](json& j) { j["out_channels"] = 5; }, ErrorCode::Unsupported, {"out_channels", "learned sigma"}},
      {[](json& j) { j["attention_head_dim"] = 7; j["num_attention_heads"] = 1; }, ErrorCode::InvalidModel,
       {"attention_head_dim", "divisible by 4"}},
      {[](json& j) { j["num_layers"] = "2"; }, ErrorCode::InvalidModel, {"num_layers", "integer"}},
      {[](json& j) { j["num_layers"] = 0; }, ErrorCode::InvalidModel, {"num_layers", "out of range"}},
      {[](json& j) { j.erase("num_embeds_ada_norm"); }, ErrorCode::InvalidModel, {"num_embeds_ada_norm"}},
      {[](json& j) { j["sample_size"] = 9; }, ErrorCode::Unsupported, {"sample_size", "multiple of patch_size"}},
      {[](json& j) { j["dropout"] = nullptr; }, ErrorCode::InvalidModel, {"dropout", "must not be null"}},
      {[](json& j) { j["double_self_attention"] = true; }, ErrorCode::Unsupported, {"double_self_attention"}},
  };
  for (const auto& e : edits) {
    const std::string dir = copy_fixture("dit_s8_sigma");
    json j = load_json(dir + "/transformer/config.json");
    e.f(j);
    save_json(dir + "/transformer/config.json", j);
    auto err = convert_error(dir);
    EXPECT_EQ(int(err.first), int(e.code)) << err.second;
    for (const char* p : e.parts) EXPECT_NE(err.second.find(p), std::string::npos) << p << " not in: " << err.second;
  }
}

TEST(DiTConverterRefuses, MissingAndMisshapedTensors) {
  const std::string dir = copy_fixture("dit_s12_eps");
  edit_weights(dir + "/transformer/diffusion_pytorch_model.safetensors", [](auto& w) {
    w.erase("transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight");  // an unshared copy
    w.at("proj_out_2.weight").shape = {4, 144};
  });
  auto e = convert_error(dir);
  expect_error(e, ErrorCode::InvalidModel,
               {"diffusion_pytorch_model.safetensors", "missing tensors (1)",
                "transformer_blocks.1.norm1.emb.class_embedder.embedding_table.weight", "proj_out_2.weight: expected [16,36]"});
}

TEST(DiTConverter, StalePosEmbedTensorIsIgnoredEvenUnderStrict) {
  const std::string dir = copy_fixture("dit_s8_sigma");
  edit_weights(dir + "/transformer/diffusion_pytorch_model.safetensors", [](auto& w) {
    SafeTensor t;
    t.name = "pos_embed.pos_embed";
    t.dtype = DType::F32;
    t.shape = {1, 16, 24};
    t.bytes.assign(16 * 24 * 4, 0);
    w[t.name] = t;
  });
  ConvertOptions opt;
  opt.strict = true;
  ConvertReport r = convert(dir, test::temp_dir("ditconv_stale") + "/m.drt", opt);
  EXPECT_TRUE(has_warning(r, "pos_embed.pos_embed"));
  // Any other stray tensor is an error under strict.
  edit_weights(dir + "/transformer/diffusion_pytorch_model.safetensors", [](auto& w) {
    SafeTensor t = w.at("proj_out_1.bias");
    t.name = "ema.proj_out_1.bias";
    w[t.name] = t;
  });
  expect_error(convert_error(dir, opt), ErrorCode::InvalidModel, {"unexpected tensors (1)", "ema.proj_out_1.bias"});
}

TEST(DiTConverterRefuses, BadModelIndex) {
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/model_index.json");
    j["id2label"]["12"] = "out of table";  // 11 rows
    save_json(dir + "/model_index.json", j);
    expect_error(convert_error(dir), ErrorCode::InvalidModel, {"model_index.json", "id2label", "class 12", "11 rows"});
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/model_index.json");
    j["id2label"]["x1"] = "bad key";
    save_json(dir + "/model_index.json", j);
    expect_error(convert_error(dir), ErrorCode::InvalidModel, {"model_index.json", "id2label", "x1"});
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/model_index.json");
    j["id2label"]["3"] = 7;
    save_json(dir + "/model_index.json", j);
    expect_error(convert_error(dir), ErrorCode::InvalidModel, {"id2label.3", "expected a string"});
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/model_index.json");
    j["transformer"] = {"diffusers", "PixArtTransformer2DModel"};
    save_json(dir + "/model_index.json", j);
    expect_error(convert_error(dir), ErrorCode::Unsupported, {"model_index.json", "PixArtTransformer2DModel"});
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/model_index.json");
    j["vae"] = {nullptr, nullptr};
    save_json(dir + "/model_index.json", j);
    expect_error(convert_error(dir), ErrorCode::InvalidModel, {"no vae component", "--no-vae"});
    ConvertOptions opt;
    opt.no_vae = true;
    const std::string out = test::temp_dir("ditconv_novae") + "/m.drt";
    convert(dir, out, opt);
    EXPECT_FALSE(read_model_file(out).vae.present());
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    json j = load_json(dir + "/vae/config.json");
    j["latent_channels"] = 8;
    save_json(dir + "/vae/config.json", j);
    expect_error(convert_error(dir), ErrorCode::InvalidModel, {"vae", "latent_channels", "in_channels is 4"});
  }
  {
    const std::string dir = copy_fixture("dit_c10");
    fs::remove(dir + "/transformer/diffusion_pytorch_model.safetensors");
    std::ofstream(dir + "/transformer/diffusion_pytorch_model.bin") << "pickle";
    expect_error(convert_error(dir), ErrorCode::Unsupported, {"pickle"});
  }
}
