// The model file's text_encoder and tokenizer sections, and the converter's text_encoder/ + tokenizer/
// handling, as hostile input. The valid file comes from converting the sd1_text fixture pipeline (sd1_tiny +
// the tiny CLIP text encoder); each test corrupts exactly one thing and checks the reader or converter
// throws the right code naming the field or file. Also: the round trip of both sections, the optional
// "causal" attention key, and old checkpoints whose text encoder stores an int64 position_ids buffer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "base/checked_math.h"
#include "base/error.h"
#include "weights_converter/tokenizer_import.h"
#include "model/model_file.h"
#include "model/tokenizer_json.h"
#include "runtime/plan.h"
#include "tests/sd_text_fixture.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace fs = std::filesystem;

namespace diffrt::test {
namespace {

using nlohmann::json;
const char* kOrigin = "te.drt";

const std::vector<uint8_t>& valid_file() {
  static const std::vector<uint8_t> bytes = [] {
    ConvertOptions opt;
    opt.input = assemble_text_pipeline("sd2", "te_format");
    opt.output = opt.input + "/../m.drt";
    convert_diffusers(opt);
    std::ifstream f(opt.output, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }();
  return bytes;
}

std::vector<uint8_t> edited(const std::function<void(json&)>& edit) { return edit_model_file(valid_file(), edit); }

void expect_header_rejected(const std::function<void(json&)>& edit, const std::string& field,
                            ErrorCode code = ErrorCode::InvalidModel) {
  const std::vector<uint8_t> f = edited(edit);
  try {
    parse_model_file(f.data(), f.size(), kOrigin);
    ADD_FAILURE() << "accepted a corrupt file; expected an error about " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kOrigin) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << "message does not name '" << field << "': " << msg;
  }
}

json& te_nodes(json& h) { return h["text_encoder"]["graph"]["nodes"]; }
// The first text-encoder node with this op.
json& te_node(json& h, const std::string& op) {
  for (json& n : te_nodes(h))
    if (n["op"] == op) return n;
  throw std::runtime_error("no " + op + " node");
}

TEST(TextEncoderFormat, RoundTrip) {
  const std::vector<uint8_t>& f = valid_file();
  ModelFile m = parse_model_file(f.data(), f.size(), kOrigin);
  ASSERT_TRUE(m.text_encoder.present());
  ASSERT_TRUE(m.has_tokenizer);
  EXPECT_EQ(m.text_encoder.config["hidden_act"], "gelu");
  EXPECT_EQ(m.tokenizer.pad_id, 0);  // SD 2 style: pad "!"
  const ClipTokenizerSpec dir = load_clip_tokenizer_dir(source_path("tests/fixtures/sd/clip_tiny_sd2/tokenizer"));
  EXPECT_EQ(tokenizer_to_json(m.tokenizer), tokenizer_to_json(dir));
  // Serialising what was read gives the same header sections back.
  std::vector<TensorBlob> blobs;
  for (const TensorInfo& t : m.tensors) {
    TensorBlob b;
    b.name = t.name; b.dtype = t.dtype; b.shape = t.shape;
    b.bytes.assign(m.tensor_data(t), m.tensor_data(t) + t.nbytes);
    blobs.push_back(std::move(b));
  }
  const std::vector<uint8_t> again = serialize_model_file(m.family, m.config, m.graph, blobs, m.scheduler, m.conditioning,
                                                          m.provenance, &m.vae, &m.text_encoder, &m.tokenizer);
  ModelFile m2 = parse_model_file(again.data(), again.size(), kOrigin);
  EXPECT_EQ(graph_to_json(m2.text_encoder.graph), graph_to_json(m.text_encoder.graph));
  EXPECT_EQ(tokenizer_to_json(m2.tokenizer), tokenizer_to_json(m.tokenizer));
  // Text encoders plan on input_ids alone.
  PlanInputs in;
  in.n = 3; in.seq_len = 77;
  const MemoryPlan p = plan_memory(m.text_encoder.graph, in);
  EXPECT_EQ(p.shapes[size_t(m.text_encoder.graph.output)].str(), "[3,77,32]");
  in.seq_len = 78;  // more tokens than positions
  EXPECT_THROW(plan_memory(m.text_encoder.graph, in), Error);
  in.seq_len = 0;
  EXPECT_THROW(plan_memory(m.text_encoder.graph, in), Error);
}

TEST(TextEncoderFormat, CausalKeyIsOptional) {
  // Old files have no "causal" key; an explicit false reads the same.
  const std::vector<uint8_t> f = edited([](json& h) {
    for (json& n : h["graph"]["nodes"])
      if (n["op"] == "attention") n["attrs"]["causal"] = false;
  });
  EXPECT_NO_THROW(parse_model_file(f.data(), f.size(), kOrigin));
}

TEST(TextEncoderFormat, RejectsBadSections) {
  expect_header_rejected([](json& h) { h.erase("tokenizer"); }, "text_encoder");
  expect_header_rejected([](json& h) { h.erase("text_encoder"); }, "tokenizer");
  expect_header_rejected([](json& h) { h["text_encoder"]["extra"] = 1; }, "text_encoder");
  expect_header_rejected([](json& h) { h["text_encoder"]["config"] = 3; }, "text_encoder.config");
  expect_header_rejected([](json& h) { te_nodes(h) = json::array(); }, "text_encoder.graph");
  expect_header_rejected([](json& h) { h["text_encoder"]["graph"]["out_channels"] = 48; },
                         "text_encoder.graph.out_channels");
  expect_header_rejected(
      [](json& h) {
        json& in = h["text_encoder"]["graph"]["inputs"];
        in["sample"] = in["input_ids"];
        in.erase("input_ids");
      },
      "text_encoder.graph");
  expect_header_rejected([](json& h) { h["text_encoder"]["graph"]["inputs"]["timestep"] = 1; }, "text_encoder.graph.inputs");
  expect_header_rejected([](json& h) { h["graph"]["inputs"]["input_ids"] = 0; }, "graph.inputs");
}

TEST(TextEncoderFormat, RejectsBadOps) {
  expect_header_rejected([](json& h) { te_node(h, "attention")["attrs"]["causal"] = "yes"; }, "attrs.causal");
  expect_header_rejected([](json& h) { te_node(h, "activation")["attrs"]["kind"] = "relu"; }, "attrs.kind");
  expect_header_rejected([](json& h) { te_node(h, "activation")["attrs"]["extra"] = 1; }, "attrs");
  expect_header_rejected([](json& h) { te_node(h, "embedding")["attrs"]["vocab"] = 0; }, "attrs.vocab");
  expect_header_rejected([](json& h) { te_node(h, "embedding")["attrs"]["max_positions"] = -1; }, "attrs.max_positions");
  // Fewer rows than the tokenizer's vocabulary (the tensor size changes with it: caught first or second).
  expect_header_rejected([](json& h) { te_node(h, "embedding")["attrs"]["vocab"] = 1000; }, "text_encoder.graph.nodes");
  expect_header_rejected([](json& h) { te_node(h, "embedding")["attrs"]["dim"] = 31; }, "weights.token");
  expect_header_rejected([](json& h) { te_node(h, "embedding")["weights"].erase("token"); }, "weights");
  expect_header_rejected([](json& h) { te_node(h, "layer_norm")["inputs"][0] = h["text_encoder"]["graph"]["inputs"]["input_ids"]; },
                         "inputs");
  expect_header_rejected([](json& h) { te_node(h, "embedding")["inputs"][0] = 1; }, "inputs");
  expect_header_rejected([](json& h) { te_node(h, "linear")["attrs"]["out"] = 95; }, "text_encoder.graph.nodes");
  // Causal masking on a cross-attention node of the UNet.
  expect_header_rejected(
      [](json& h) {
        for (json& n : h["graph"]["nodes"])
          if (n["op"] == "attention" && n["inputs"].size() == 2) {
            n["attrs"]["causal"] = true;
            break;
          }
      },
      "attrs.causal");
}

TEST(TextEncoderFormat, RejectsBadTokenizer) {
  using E = ErrorCode;
  expect_header_rejected([](json& h) { h["tokenizer"]["type"] = "wordpiece"; }, "tokenizer.type", E::Unsupported);
  expect_header_rejected([](json& h) { h["tokenizer"]["extra"] = 1; }, "tokenizer");
  expect_header_rejected([](json& h) { h["tokenizer"]["vocab"] = "x"; }, "tokenizer.vocab");
  expect_header_rejected([](json& h) { h["tokenizer"]["vocab"] = json::array(); }, "tokenizer.vocab");
  expect_header_rejected([](json& h) { h["tokenizer"]["vocab"][3] = 7; }, "tokenizer.vocab[3]");
  expect_header_rejected([](json& h) { h["tokenizer"]["vocab"][3] = h["tokenizer"]["vocab"][4]; }, "duplicate");
  expect_header_rejected([](json& h) { h["tokenizer"]["merges"][0] = "in"; }, "tokenizer.merges[0]");
  expect_header_rejected([](json& h) { h["tokenizer"]["merges"][0] = "i n g"; }, "tokenizer.merges[0]");
  expect_header_rejected([](json& h) { h["tokenizer"]["merges"][0] = "i\u200b n"; }, "merges[0]");
  expect_header_rejected([](json& h) { h["tokenizer"]["bos_id"] = 99999999; }, "tokenizer.bos_id");
  expect_header_rejected([](json& h) { h["tokenizer"]["eos_id"] = -1; }, "tokenizer.eos_id");
  expect_header_rejected([](json& h) { h["tokenizer"]["pad_id"] = 1.5; }, "tokenizer.pad_id");
  expect_header_rejected([](json& h) { h["tokenizer"]["unk_id"] = "1"; }, "tokenizer.unk_id");
  expect_header_rejected([](json& h) { h["tokenizer"]["pad_id"] = 1514; }, "pad id");  // beyond the vocabulary
  expect_header_rejected([](json& h) { h["tokenizer"]["max_length"] = 1; }, "tokenizer.max_length");
  expect_header_rejected([](json& h) { h["tokenizer"]["max_length"] = 78; }, "max_positions");
  expect_header_rejected([](json& h) { h["tokenizer"]["padding_side"] = "up"; }, "tokenizer.padding_side");
  expect_header_rejected([](json& h) { h["tokenizer"]["split_special_tokens"] = 0; }, "tokenizer.split_special_tokens");
  expect_header_rejected([](json& h) { h["tokenizer"]["added_tokens"][0]["id"] = 5; }, "added token");
  expect_header_rejected([](json& h) { h["tokenizer"]["added_tokens"][0]["extra"] = 5; }, "tokenizer.added_tokens[0]");
  expect_header_rejected([](json& h) { h["tokenizer"]["added_tokens"][0]["content"] = ""; }, "added token");
}

// ---- converter ---------------------------------------------------------------------------------------------

void expect_convert_error(const std::function<void(const fs::path&)>& corrupt, ErrorCode code, const std::string& needle,
                          bool no_text_encoder = false) {
  static int n = 0;
  ConvertOptions opt;
  opt.input = assemble_text_pipeline("sd1", "te_conv" + std::to_string(n++));
  opt.output = opt.input + "/../m.drt";
  opt.no_text_encoder = no_text_encoder;
  corrupt(opt.input);
  try {
    convert_diffusers(opt);
    ADD_FAILURE() << "converted a corrupt pipeline; expected " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what() << "\nwanted: " << needle;
  }
}

void edit_json(const fs::path& p, const std::function<void(json&)>& edit) {
  json j = json::parse(std::ifstream(p));
  edit(j);
  std::ofstream(p) << j.dump(1);
}

TEST(TextEncoderConvert, RejectsBadParts) {
  using E = ErrorCode;
  expect_convert_error([](const fs::path& d) { fs::remove_all(d / "text_encoder"); }, E::InvalidModel, "no-text-encoder");
  expect_convert_error([](const fs::path& d) { fs::remove_all(d / "tokenizer"); }, E::InvalidModel, "tokenizer");
  expect_convert_error([](const fs::path& d) { edit_json(d / "model_index.json", [](json& j) { j["tokenizer"] = {nullptr, nullptr}; }); },
                       E::InvalidModel, "names a text_encoder but no tokenizer");
  expect_convert_error([](const fs::path& d) { edit_json(d / "model_index.json", [](json& j) { j["text_encoder"][1] = "T5EncoderModel"; }); },
                       E::Unsupported, "T5EncoderModel");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["hidden_act"] = "relu"; }); },
                       E::Unsupported, "hidden_act");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["hidden_size"] = 48; }); },
                       E::InvalidModel, "cross_attention_dim");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["num_attention_heads"] = 5; }); },
                       E::InvalidModel, "num_attention_heads");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["vocab_size"] = 1000; }); },
                       E::InvalidModel, "vocab_size");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["max_position_embeddings"] = 64; }); },
                       E::InvalidModel, "model_max_length");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["use_attention_mask"] = true; }); },
                       E::InvalidModel, "use_attention_mask");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["architectures"] = {"CLIPTextModelWithProjection"}; }); },
                       E::InvalidModel, "architectures");
  expect_convert_error([](const fs::path& d) { edit_json(d / "text_encoder/config.json", [](json& j) { j["num_hidden_layers"] = 3; }); },
                       E::InvalidModel, "missing tensors");
  expect_convert_error([](const fs::path& d) {
                         fs::rename(d / "text_encoder/model.safetensors", d / "text_encoder/pytorch_model.bin");
                       },
                       E::Unsupported, "pickle");
  expect_convert_error([](const fs::path& d) { std::ofstream(d / "tokenizer/merges.txt") << "#version: 0.2\na b c\n"; },
                       E::InvalidModel, "merges.txt");
}

TEST(TextEncoderConvert, NoTextEncoderOption) {
  ConvertOptions opt;
  opt.input = assemble_text_pipeline("sd1", "te_none");
  opt.output = opt.input + "/../m.drt";
  opt.no_text_encoder = true;
  fs::remove_all(fs::path(opt.input) / "text_encoder");  // not even read
  const ConvertReport r = convert_diffusers(opt);
  EXPECT_TRUE(r.text_encoder_source.empty());
  const ModelFile m = read_model_file(opt.output);
  EXPECT_FALSE(m.text_encoder.present());
  EXPECT_FALSE(m.has_tokenizer);
}

// Older CLIP checkpoints (e.g. the SD 1.x text encoders) store text_model.embeddings.position_ids as int64:
// skipped (positions are 0..L-1); any other integer tensor is refused.
std::vector<uint8_t> with_int64_tensor(const fs::path& file, const std::string& name) {
  SafeTensorsFile f = read_safetensors(file.string(), {"text_model.embeddings.position_ids"});
  std::vector<SafeTensor> ts;
  for (auto& [n, t] : f.tensors) ts.push_back(t);
  const std::vector<uint8_t> base = encode_safetensors(ts);
  const uint64_t h = le64(base.data());
  json header = json::parse(base.begin() + 8, base.begin() + 8 + long(h));
  const uint64_t data_size = base.size() - 8 - h;
  header[name] = {{"dtype", "I64"}, {"shape", {1, 77}}, {"data_offsets", {data_size, data_size + 77 * 8}}};
  const std::string text = header.dump();
  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + base.size() + 77 * 8);
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(uint64_t(text.size()) >> (8 * i)));
  for (char ch : text) out.push_back(uint8_t(ch));
  out.insert(out.end(), base.begin() + 8 + long(h), base.end());
  for (int64_t i = 0; i < 77; ++i)
    for (int b = 0; b < 8; ++b) out.push_back(uint8_t(uint64_t(i) >> (8 * b)));
  return out;
}

TEST(TextEncoderConvert, SkipsInt64PositionIds) {
  ConvertOptions opt;
  opt.input = assemble_text_pipeline("sd1", "te_posids");
  opt.output = opt.input + "/../m.drt";
  const fs::path st = fs::path(opt.input) / "text_encoder/model.safetensors";
  std::vector<uint8_t> bytes = with_int64_tensor(st, "text_model.embeddings.position_ids");
  std::ofstream(st, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  opt.strict = true;  // not even a warning: it is skipped at read
  const ConvertReport r = convert_diffusers(opt);
  EXPECT_FALSE(r.text_encoder_source.empty());

  bytes = with_int64_tensor(st, "text_model.something_else");
  std::ofstream(st, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  try {
    convert_diffusers(opt);
    ADD_FAILURE() << "accepted an int64 tensor other than position_ids";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("something_else"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffrt::test
