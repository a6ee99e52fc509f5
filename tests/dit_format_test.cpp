// The DiT parts of the model file, treated as hostile input: the "pipeline" section (cfg order, extra channels,
// id2label), the optional attributes of layer_norm (adaLN shift/scale offsets) and linear (gate offset), and the
// patch_embed / unpatchify ops. A converted fixture is the valid file; each test corrupts its header in one way and
// expects an error naming the field. Also the DiTPipeline.labels rule (python_strip, later duplicate wins).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "base/atomic_file.h"
#include "base/checked_math.h"
#include "base/error.h"
#include "model/model_file.h"
#include "model/pipeline_json.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

using namespace diffrt;
using nlohmann::json;

namespace {

constexpr const char* kOrigin = "dit.drt";

const std::vector<uint8_t>& valid_file() {
  static std::vector<uint8_t> bytes = [] {
    ConvertOptions opt;
    opt.input = test::source_path("tests/fixtures/dit/dit_s8_sigma/pipeline");
    opt.output = test::temp_dir("dit_format") + "/m.drt";
    opt.no_vae = true;
    convert_diffusers(opt);
    const std::string s = read_file_bytes(opt.output, 1ull << 30);
    return std::vector<uint8_t>(s.begin(), s.end());
  }();
  return bytes;
}

std::vector<uint8_t> edited(const std::function<void(json&)>& edit) { return test::edit_model_file(valid_file(), edit); }

void expect_rejected(const std::function<void(json&)>& edit, const std::string& field, const std::string& what = "") {
  const std::vector<uint8_t> f = edited(edit);
  try {
    parse_model_file(f.data(), f.size(), kOrigin);
    FAIL() << "accepted a corrupt file; expected an error about " << field;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::InvalidModel) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << "message does not name '" << field << "': " << msg;
    if (!what.empty()) {
      EXPECT_NE(msg.find(what), std::string::npos) << "message lacks '" << what << "': " << msg;
    }
  }
}

// Index of the first node with this name.
size_t node_index(const json& h, const std::string& name) {
  const json& nodes = h["graph"]["nodes"];
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i]["name"] == name) return i;
  ADD_FAILURE() << "no node " << name;
  return 0;
}
json& node(json& h, const std::string& name) { return h["graph"]["nodes"][node_index(h, name)]; }

}  // namespace

TEST(DiTModelFile, ValidFileRoundTrips) {
  const std::vector<uint8_t>& f = valid_file();
  ModelFile m = parse_model_file(f.data(), f.size(), kOrigin);
  EXPECT_EQ(m.family, "dit");
  EXPECT_EQ(m.pipeline.class_name, "DiTPipeline");
  EXPECT_EQ(int(m.pipeline.cfg_order), int(CfgOrder::CondFirst));
  EXPECT_TRUE(m.pipeline.drop_extra_channels);
  EXPECT_FALSE(m.pipeline.id2label.empty());
  // Re-serialising the parsed parts gives the same header.
  const json again = pipeline_to_json(m.pipeline);
  EXPECT_EQ(pipeline_from_json(again, JsonCheck("x"), "pipeline").id2label, m.pipeline.id2label);
  EXPECT_EQ(graph_to_json(graph_from_json(graph_to_json(m.graph), "x")), graph_to_json(m.graph));
}

TEST(DiTModelFile, PipelineSectionIsOptional) {
  const std::vector<uint8_t> f = edited([](json& h) { h.erase("pipeline"); });
  ModelFile m = parse_model_file(f.data(), f.size(), kOrigin);
  EXPECT_FALSE(m.pipeline.present());
  EXPECT_EQ(int(m.pipeline.cfg_order), int(CfgOrder::UncondFirst));
  EXPECT_FALSE(m.pipeline.drop_extra_channels);
}

TEST(DiTModelFileReject, PipelineSection) {
  expect_rejected([](json& h) { h["pipeline"]["cfg_order"] = "both"; }, "pipeline.cfg_order", "unknown value");
  expect_rejected([](json& h) { h["pipeline"]["extra_channels"] = "variance"; }, "pipeline.extra_channels");
  expect_rejected([](json& h) { h["pipeline"]["colour"] = 1; }, "pipeline", "colour");
  expect_rejected([](json& h) { h["pipeline"].erase("class"); }, "pipeline.class");
  expect_rejected([](json& h) { h["pipeline"]["class"] = ""; }, "pipeline.class");
  expect_rejected([](json& h) { h["pipeline"]["id2label"] = json::object(); }, "pipeline.id2label", "array");
  expect_rejected([](json& h) { h["pipeline"]["id2label"][0] = json::array({1}); }, "pipeline.id2label[0]",
                  "[class id, name]");
  expect_rejected([](json& h) { h["pipeline"]["id2label"][0] = json::array({"1", "x"}); }, "pipeline.id2label[0][0]");
  expect_rejected([](json& h) { h["pipeline"]["id2label"][0] = json::array({1001, "x"}); }, "pipeline.id2label[0][0]",
                  "conditioning.num_classes 1001");
  expect_rejected([](json& h) { h["pipeline"]["id2label"][0] = json::array({-1, "x"}); }, "pipeline.id2label[0][0]");
  expect_rejected([](json& h) { h["pipeline"]["id2label"][0] = json::array({1, std::string(5000, 'a')}); },
                  "pipeline.id2label[0][1]", "longer than");
}

TEST(DiTModelFileReject, AdaLayerNormAttributes) {
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.norm1.norm")["attrs"].erase("scale_offset"); },
                  "attrs.scale_offset", "come together");
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.norm1.norm")["attrs"]["shift_offset"] = -3; },
                  "attrs.shift_offset", "out of range");
  expect_rejected([](json& h) {  // modulated, but one input
    json& n = node(h, "transformer_blocks.0.norm1.norm");
    n["inputs"] = json::array({n["inputs"][0]});
  }, "inputs", "modulated layer_norm");
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.norm1.norm")["attrs"].erase("shift_offset"); },
                  "attrs.shift_offset", "come together");
}

TEST(DiTModelFileReject, GatedLinearAttributes) {
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.attn1.to_out.0")["attrs"]["out_scale"] = 0.5; },
                  "attrs.out_scale", "gated linear");
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.attn1.to_out.0")["attrs"].erase("gate_offset"); },
                  "inputs", "gate_offset");
  expect_rejected([](json& h) {
    json& n = node(h, "transformer_blocks.0.attn1.to_out.0");
    n["inputs"] = json::array({n["inputs"][0], n["inputs"][1]});
  }, "inputs", "gated linear");
  expect_rejected([](json& h) { node(h, "transformer_blocks.0.attn1.to_out.0")["attrs"]["gate_offset"] = "2"; },
                  "attrs.gate_offset", "integer");
}

TEST(DiTModelFileReject, PatchEmbedAndUnpatchify) {
  expect_rejected([](json& h) { node(h, "pos_embed")["attrs"]["dim"] = 26; }, "attrs.dim", "divisible by 4");
  expect_rejected([](json& h) { node(h, "pos_embed")["attrs"]["patch"] = 0; }, "attrs.patch", "out of range");
  expect_rejected([](json& h) { node(h, "pos_embed")["attrs"]["interpolation_scale"] = 0.0; },
                  "attrs.interpolation_scale", "> 0");
  expect_rejected([](json& h) { node(h, "pos_embed")["attrs"].erase("base_size"); }, "attrs.base_size");
  expect_rejected([](json& h) { node(h, "unpatchify")["attrs"]["extra"] = 1; }, "attrs", "extra");
  // The patch conv's weight must have the attributes' element count (the executors index it with them).
  expect_rejected([](json& h) { node(h, "pos_embed")["attrs"]["cin"] = 3; }, "pos_embed");
}

TEST(DiTPlan, ShapesAreCheckedBeforeRunning) {
  const std::vector<uint8_t>& f = valid_file();
  const ModelFile m = parse_model_file(f.data(), f.size(), kOrigin);
  // H and W must be whole patches (the graph's downsample factor is the patch size).
  try {
    plan_memory(m.graph, PlanInputs{1, 9, 8, 0});
    FAIL() << "planned a 9x8 latent with patch 2";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("multiple of 2"), std::string::npos) << e.what();
  }
  // Non-square and resized grids plan (the position table is recomputed per grid).
  EXPECT_EQ(plan_memory(m.graph, PlanInputs{2, 8, 12, 0}).shapes[size_t(m.graph.output)].str(), "[2,8,12,8]");
  EXPECT_EQ(plan_memory(m.graph, PlanInputs{1, 64, 64, 0}).shapes[size_t(m.graph.output)].str(), "[1,64,64,8]");
  // A modulation narrower than its slices is an inconsistent graph.
  Graph g = m.graph;
  for (Node& n : g.nodes)
    if (n.name == "transformer_blocks.1.norm3") std::get<LayerNormAttrs>(n.attrs).scale_offset = 6 * 24 * 2 + 2 * 24;
  EXPECT_THROW(plan_memory(g, PlanInputs{1, 8, 8, 0}), Error);
}

TEST(DiTClassNames, PythonStripAndDuplicates) {
  EXPECT_EQ(python_strip("  a b \t\n"), "a b");
  EXPECT_EQ(python_strip("\xc2\xa0x\xe3\x80\x80"), "x");  // U+00A0 and U+3000 are str.isspace()
  EXPECT_EQ(python_strip("\x1f\x1cy\t"), "y");  // U+001C..U+001F are str.isspace() too
  EXPECT_EQ(python_strip(" \xc2\x85z"), "z");              // U+0085 (NEL) is
  EXPECT_EQ(python_strip("   "), "");
  PipelineInfo p;
  p.id2label = {{517, "crane"}, {134, "crane, bird"}, {3, " golden retriever,, dog "}};
  const auto ids = class_label_ids(p);
  EXPECT_EQ(ids.at("crane"), 134);  // the later entry in file order wins, whatever the ids
  EXPECT_EQ(ids.at("bird"), 134);
  EXPECT_EQ(ids.at("golden retriever"), 3);
  EXPECT_EQ(ids.at("dog"), 3);
  EXPECT_EQ(ids.at(""), 3);  // "a,,b".split(",") has an empty piece; diffusers maps it too
  EXPECT_EQ(class_label_id(p, "  dog"), 3);
  EXPECT_EQ(class_label_id(p, "cat"), -1);
}
