// Model-file (.drt) format tests: a round trip of a small graph with fp32/fp16/bf16 tensors, then
// one test per validation rule. Each rule test starts from a valid file, corrupts exactly one
// thing, and checks the reader throws InvalidModel naming the file and the field.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "base/checked_math.h"
#include "base/error.h"
#include "base/atomic_file.h"
#include "model/model_file.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

using nlohmann::json;
const char* kOrigin = "test.drt";

// values: 0 sample, 1 timestep, 2 class_labels, 3 temb, 4 h0, 5 h1, 6 qkv, 7 attn, 8 h2, 9 up,
// 10 cat, 11 out.  nodes: 0 temb, 1 conv_in, 2 norm, 3 to_qkv, 4 attn, 5 aff, 6 up, 7 cat, 8 conv_out
Graph small_graph() {
  Graph g;
  g.values = {"sample", "timestep", "class_labels", "temb", "h0", "h1", "qkv", "attn", "h2", "up", "cat", "out"};
  g.sample = 0;
  g.timestep = 1;
  g.class_labels = 2;
  g.output = 11;
  g.in_channels = 3;
  g.out_channels = 3;
  g.downsample_factor = 2;
  auto add = [&](std::string name, OpAttrs a, std::vector<int> in, int out, std::map<std::string, std::string> w) {
    Node n;
    n.name = std::move(name);
    n.attrs = a;
    n.inputs = std::move(in);
    n.output = out;
    n.weights = std::move(w);
    g.nodes.push_back(std::move(n));
  };
  add("temb", TimeEmbeddingAttrs{8, 16, 10, true, 1.0f}, {1, 2}, 3, {{"table", "temb.table"}});
  Conv2dAttrs cin;
  cin.cin = 3;
  cin.cout = 16;
  add("conv_in", cin, {0}, 4, {{"weight", "conv_in.weight"}, {"bias", "conv_in.bias"}});
  add("norm", GroupNormAttrs{4, 1e-6f, true, EmbMode::AddBeforeNorm}, {4, 3}, 5,
      {{"weight", "norm.weight"}, {"bias", "norm.bias"}});
  add("to_qkv", LinearAttrs{16, 48, false, 1.0f}, {5}, 6, {{"weight", "to_qkv.weight"}});
  add("attn", AttentionAttrs{2, 8, 0.35355339f}, {6}, 7, {});
  add("aff", AffineAttrs{0.5f, -0.25f}, {7}, 8, {});
  add("up", Upsample2xAttrs{}, {8}, 9, {});
  add("cat", ConcatAttrs{}, {9, 9}, 10, {});
  Conv2dAttrs cout;
  cout.cin = 32;
  cout.cout = 3;
  cout.stride = 2;
  cout.pad_top = cout.pad_left = 0;
  cout.out_scale = 0.5f;
  add("conv_out", cout, {10}, 11, {{"weight", "conv_out.weight"}});
  return g;
}

TensorBlob blob(const std::string& name, DType dt, std::vector<int64_t> shape, uint8_t seed) {
  TensorBlob b;
  b.name = name;
  b.dtype = dt;
  b.shape = std::move(shape);
  uint64_t n = dtype_size(dt);
  for (int64_t d : b.shape) n *= uint64_t(d);
  b.bytes.resize(n);
  for (size_t i = 0; i < n; ++i) b.bytes[i] = uint8_t(seed + i * 7);
  return b;
}

// The graph's tensors are in its dtype (fp32, small_graph's default); the table also holds tensors no graph reads,
// in every dtype.
std::vector<TensorBlob> small_tensors(DType graph_dtype = DType::F32) {
  const DType g = graph_dtype;
  return {blob("temb.table", g, {10, 8}, 1),       blob("conv_in.weight", g, {16, 3, 3, 3}, 2),
          blob("conv_in.bias", g, {16}, 3),        blob("norm.weight", g, {16}, 4),
          blob("norm.bias", g, {16}, 5),           blob("to_qkv.weight", g, {48, 16}, 6),
          blob("conv_out.weight", g, {3, 3, 3, 32}, 7), blob("empty", DType::F32, {0, 4}, 8),
          blob("extra.fp16", DType::F16, {5}, 9),  blob("extra.bf16", DType::BF16, {3, 2}, 10)};
}

std::vector<uint8_t> valid_file() {
  json config = {{"sample_size", 32}, {"block_out_channels", {16}}};
  json sched = {{"num_train_timesteps", 1000}, {"beta_schedule", "linear"}};
  json prov = {{"converter", "test"}};
  return serialize_model_file("unet2d", config, small_graph(), small_tensors(), sched, Conditioning{10, 10}, prov);
}

using Parts = test::ModelFileParts;
using test::le64;
Parts split(const std::vector<uint8_t>& f) { return test::split_model_file(f); }
// A file with this exact header text and data section (preamble and padding made consistent).
std::vector<uint8_t> assemble(const std::string& text, const std::vector<uint8_t>& data,
                              uint32_t version = kFormatVersion) {
  return test::assemble_model_file(text, data, version);
}
std::vector<uint8_t> edited(const std::function<void(json&)>& edit) { return test::edit_model_file(valid_file(), edit); }

void expect_rejected(const std::vector<uint8_t>& f, const std::string& field, const std::string& what = "") {
  try {
    parse_model_file(f.data(), f.size(), kOrigin);
    FAIL() << "accepted a corrupt file; expected an error about " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidModel) << e.what();
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind(std::string(kOrigin) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << "message does not name '" << field << "': " << msg;
    if (!what.empty()) {
      EXPECT_NE(msg.find(what), std::string::npos) << "message lacks '" << what << "': " << msg;
    }
  }
}
void expect_header_rejected(const std::function<void(json&)>& edit, const std::string& field,
                            const std::string& what = "") {
  expect_rejected(edited(edit), field, what);
}
json& node(json& h, int i) { return h["graph"]["nodes"][size_t(i)]; }
json& tensor(json& h, int i) { return h["tensors"][size_t(i)]; }

// ---- round trip ---------------------------------------------------------------------------------

TEST(ModelFile, RoundTripThroughDisk) {
  const std::vector<uint8_t> bytes = valid_file();
  const std::string path = test::temp_dir("format") + "/m.drt";
  write_file_atomic(path, bytes.data(), bytes.size());
  ModelFile m = read_model_file(path);
  EXPECT_EQ(m.family, "unet2d");
  EXPECT_EQ(m.config["sample_size"], 32);
  EXPECT_EQ(m.scheduler["beta_schedule"], "linear");
  EXPECT_EQ(m.provenance["converter"], "test");
  EXPECT_EQ(m.conditioning.num_classes, 10);
  EXPECT_EQ(m.conditioning.null_class, 10);
  EXPECT_EQ(graph_to_json(m.graph), graph_to_json(small_graph()));
  ASSERT_EQ(m.graph.nodes.size(), 9u);
  EXPECT_STREQ(op_name(m.graph.nodes[2].attrs), "group_norm");
  const auto& gn = std::get<GroupNormAttrs>(m.graph.nodes[2].attrs);
  EXPECT_EQ(gn.eps, 1e-6f);
  EXPECT_EQ(gn.emb_mode, EmbMode::AddBeforeNorm);
  EXPECT_EQ(std::get<Conv2dAttrs>(m.graph.nodes[8].attrs).stride, 2);
  EXPECT_EQ(std::get<AttentionAttrs>(m.graph.nodes[4].attrs).scale, 0.35355339f);
  EXPECT_EQ(m.graph.value_id("qkv"), 6);
  EXPECT_EQ(m.graph.value_id("nope"), -1);

  const auto want = small_tensors();
  ASSERT_EQ(m.tensors.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const TensorInfo* t = m.find(want[i].name);
    ASSERT_NE(t, nullptr) << want[i].name;
    EXPECT_EQ(t->dtype, want[i].dtype);
    EXPECT_EQ(t->shape, want[i].shape);
    EXPECT_EQ(t->offset % kDataAlignment, 0u);
    EXPECT_EQ(t->nbytes, want[i].bytes.size());
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(m.tensor_data(*t), want[i].bytes.data(), t->nbytes), 0) << t->name;
    }
  }
  EXPECT_EQ(m.find("missing"), nullptr);
  EXPECT_EQ(m.find("conv_in.weight")->numel(), 16u * 27u);

  // Parsing from memory gives the same result as reading the file.
  ModelFile m2 = parse_model_file(bytes.data(), bytes.size(), kOrigin);
  EXPECT_EQ(m2.data, m.data);
  EXPECT_EQ(graph_to_json(m2.graph), graph_to_json(m.graph));
}

// ---- per-graph dtype (format version 3) and version 1 and 2 files ----------------------------------------

TEST(ModelFile, GraphDtypeIsWrittenAndRead) {
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    Graph g = small_graph();
    g.dtype = dt;
    const auto bytes = serialize_model_file("unet2d", json::object(), g, small_tensors(dt), json::object(),
                                            Conditioning{10, 10}, json::object());
    EXPECT_EQ(split(bytes).header["graph"]["dtype"], dtype_name(dt));
    EXPECT_EQ(split(bytes).header["version"], 3);
    ModelFile m = parse_model_file(bytes.data(), bytes.size(), kOrigin);
    EXPECT_EQ(m.version, 3u);
    EXPECT_EQ(m.graph.dtype, dt);
    EXPECT_EQ(m.find("extra.bf16")->dtype, DType::BF16);  // tensors no graph reads keep any dtype
    EXPECT_EQ(m.find("empty")->dtype, DType::F32);
    ASSERT_EQ(model_graphs(m).size(), 1u);
    EXPECT_EQ(model_graphs(m)[0].first, "graph");
  }
}
TEST(ModelFile, WriterRefusesTensorInAnotherDtypeThanItsGraph) {
  auto t = small_tensors();
  t[1] = blob("conv_in.weight", DType::F16, {16, 3, 3, 3}, 2);
  try {
    serialize_model_file("unet2d", json::object(), small_graph(), t, json::object(), Conditioning{10, 10}, json::object());
    FAIL() << "wrote a graph whose tensor is in another dtype";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("\"conv_in.weight\" is fp16 but graph.dtype is fp32"), std::string::npos)
        << e.what();
  }
}
TEST(ModelFileReject, GraphDtypeMissing) {
  expect_header_rejected([](json& h) { h["graph"].erase("dtype"); }, "graph.dtype",
                         "missing (format version 3 records each graph's dtype)");
}
TEST(ModelFileReject, GraphDtypeUnknown) {
  expect_header_rejected([](json& h) { h["graph"]["dtype"] = "fp8"; }, "graph.dtype", "unsupported dtype \"fp8\"");
  expect_header_rejected([](json& h) { h["graph"]["dtype"] = 16; }, "graph.dtype", "expected a string");
}
TEST(ModelFileReject, TensorDtypeDiffersFromItsGraph) {
  expect_header_rejected(
      [](json& h) {
        tensor(h, 1)["dtype"] = "bf16";
        tensor(h, 1)["nbytes"] = 16 * 27 * 2;
      },
      "graph.nodes[1].weights.weight", "tensor \"conv_in.weight\" is bf16 but graph.dtype is fp32");
  expect_header_rejected([](json& h) { h["graph"]["dtype"] = "fp16"; }, "graph.nodes[0].weights.table",
                         "is fp32 but graph.dtype is fp16");
}

// Files written before graphs recorded their dtype (versions 1 and 2) read, each graph's dtype taken from its
// tensors.
std::vector<uint8_t> as_version(const std::vector<uint8_t>& v3, uint32_t version) {
  Parts p = split(v3);
  p.header["version"] = version;
  p.header["graph"].erase("dtype");
  return assemble(p.header.dump(), p.data, version);
}
TEST(ModelFile, ReadsVersion1And2Files) {
  for (uint32_t version : {1u, 2u})
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      Graph g = small_graph();
      g.dtype = dt;
      const auto old = as_version(serialize_model_file("unet2d", json::object(), g, small_tensors(dt), json::object(),
                                                       Conditioning{10, 10}, json::object()),
                                  version);
      ModelFile m = parse_model_file(old.data(), old.size(), kOrigin);
      EXPECT_EQ(m.version, version);
      EXPECT_EQ(m.graph.dtype, dt) << "inferred from the graph's tensors";
    }
  // Versions 1 and 2 allowed any mix of dtypes inside a graph (the CPU backend widens them; CUDA refuses such a
  // file): still readable, the graph's dtype is then fp32.
  Parts p = split(valid_file());
  p.header["version"] = 2;
  p.header["graph"].erase("dtype");
  p.header["tensors"][1]["dtype"] = "fp16";
  p.header["tensors"][1]["nbytes"] = 16 * 27 * 2;
  const auto mixed = assemble(p.header.dump(), p.data, 2);
  ModelFile m = parse_model_file(mixed.data(), mixed.size(), kOrigin);
  EXPECT_EQ(m.graph.dtype, DType::F32);
  EXPECT_EQ(m.find("conv_in.weight")->dtype, DType::F16);
}
TEST(ModelFileReject, OlderVersionGraphWithDtype) {
  for (uint32_t version : {1u, 2u}) {
    Parts p = split(valid_file());
    p.header["version"] = version;
    expect_rejected(assemble(p.header.dump(), p.data, version), "graph.dtype",
                    "not part of format version " + std::to_string(version));
  }
}
TEST(ModelFileReject, HeaderVersionDiffersFromPreamble) {
  Parts p = split(valid_file());
  p.header["version"] = 2;
  expect_rejected(assemble(p.header.dump(), p.data, 3), "version", "header version differs from the preamble");
}

TEST(ModelFile, WriterRefusesGraphWithDanglingWeight) {
  Graph g = small_graph();
  g.nodes[1].weights["weight"] = "no_such_tensor";
  EXPECT_THROW(serialize_model_file("unet2d", json::object(), g, small_tensors(), json::object(), Conditioning{10, 10},
                                    json::object()),
               Error);
}
TEST(ModelFile, WriterRefusesByteSizeMismatch) {
  auto t = small_tensors();
  t[0].bytes.pop_back();
  EXPECT_THROW(serialize_model_file("unet2d", json::object(), small_graph(), t, json::object(), Conditioning{10, 10},
                                    json::object()),
               Error);
}
TEST(ModelFile, ReadMissingFileIsIoError) {
  try {
    read_model_file("/nonexistent/dir/m.drt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/m.drt"), std::string::npos);
  }
}
TEST(ModelFile, ReadTruncatedFileFromDisk) {
  auto f = valid_file();
  f.pop_back();
  const std::string path = test::temp_dir("format") + "/t.drt";
  write_file_atomic(path, f.data(), f.size());
  try {
    read_model_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": data_size"), std::string::npos) << e.what();
  }
}

// ---- preamble -----------------------------------------------------------------------------------

TEST(ModelFileReject, TooSmall) {
  auto f = valid_file();
  f.resize(20);
  expect_rejected(f, "too small");
}
TEST(ModelFileReject, BadMagic) {
  auto f = valid_file();
  f[0] = 'X';
  expect_rejected(f, "magic");
}
TEST(ModelFileReject, UnsupportedVersion) {
  auto f = valid_file();
  f[8] = 4;  // this build reads 1 to 3 (tests/vae_encoder_test.cpp reads a version 1 file)
  expect_rejected(f, "version", "unsupported format version 4 (this build reads 1 to 3)");
  f[8] = 0;
  expect_rejected(f, "version", "unsupported format version 0");
}
TEST(ModelFileReject, ReservedNonZero) {
  auto f = valid_file();
  f[13] = 1;
  expect_rejected(f, "reserved");
}
TEST(ModelFileReject, HeaderLengthAboveCap) {
  auto f = valid_file();
  uint64_t h = kMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) f[16 + size_t(i)] = uint8_t(h >> (8 * i));
  expect_rejected(f, "header_length", "above the limit");
}
TEST(ModelFileReject, HeaderLengthBeyondFile) {
  auto f = valid_file();
  uint64_t h = f.size();
  for (int i = 0; i < 8; ++i) f[16 + size_t(i)] = uint8_t(h >> (8 * i));
  expect_rejected(f, "header_length", "beyond the end");
}
TEST(ModelFileReject, HeaderPaddingNonZero) {
  auto f = valid_file();
  f[24 + le64(f.data() + 16)] = 1;  // first padding byte
  expect_rejected(f, "header_padding");
}
TEST(ModelFileReject, TruncatedData) {
  auto f = valid_file();
  f.pop_back();
  expect_rejected(f, "data_size", "does not match the file size");
}
TEST(ModelFileReject, TrailingBytes) {
  auto f = valid_file();
  f.push_back(0);
  expect_rejected(f, "data_size", "does not match the file size");
}

// ---- header JSON --------------------------------------------------------------------------------

TEST(ModelFileReject, HeaderNotJson) {
  expect_rejected(assemble("{\"format\": ", split(valid_file()).data), "header", "not valid UTF-8 JSON");
}
TEST(ModelFileReject, HeaderInvalidUtf8) {
  Parts p = split(valid_file());
  std::string text = p.header.dump();
  size_t at = text.find("unet2d");
  text[at] = char(0xff);
  expect_rejected(assemble(text, p.data), "header", "UTF-8");
}
TEST(ModelFileReject, HeaderNotObject) {
  expect_rejected(assemble("[1, 2, 3]", split(valid_file()).data), "header", "expected a JSON object");
}
TEST(ModelFileReject, DuplicateTopLevelKey) {
  Parts p = split(valid_file());
  std::string text = p.header.dump();
  text.insert(1, "\"family\":\"evil\",");
  expect_rejected(assemble(text, p.data), "duplicate key \"family\"");
}
TEST(ModelFileReject, DuplicateNestedKeyNamesItsPath) {
  Parts p = split(valid_file());
  std::string text = p.header.dump();
  size_t at = text.find("\"sample_size\"");
  text.insert(at, "\"sample_size\":64,");
  expect_rejected(assemble(text, p.data), "config", "duplicate key \"sample_size\"");
}
TEST(ModelFileReject, DeepNesting) {
  expect_header_rejected([](json& h) {
    json deep = json::array();
    for (int i = 0; i < 100; ++i) deep = json::array({deep});
    h["config"]["x"] = deep;
  }, "nested deeper");
}
TEST(ModelFileReject, UnknownTopLevelField) {
  expect_header_rejected([](json& h) { h["surprise"] = 1; }, "unexpected field \"surprise\"");
}
TEST(ModelFileReject, MissingRequiredField) {
  expect_header_rejected([](json& h) { h.erase("conditioning"); }, "conditioning", "missing required field");
}
TEST(ModelFileReject, WrongFormatName) {
  expect_header_rejected([](json& h) { h["format"] = "other"; }, "format");
}
TEST(ModelFileReject, HeaderVersionMismatch) {
  expect_header_rejected([](json& h) { h["version"] = 7; }, "version");
}
TEST(ModelFileReject, FamilyNotString) {
  expect_header_rejected([](json& h) { h["family"] = 3; }, "family", "expected a string");
}
TEST(ModelFileReject, DataSizeNegative) {
  expect_header_rejected([](json& h) { h["data_size"] = -1; }, "data_size", "non-negative integer");
}
TEST(ModelFileReject, DataSizeFloat) {
  expect_header_rejected([](json& h) { h["data_size"] = 3.7; }, "data_size", "non-negative integer");
}
TEST(ModelFileReject, ConfigNotObject) {
  expect_header_rejected([](json& h) { h["config"] = "x"; }, "config", "expected a JSON object");
}
TEST(ModelFileReject, SchedulerNotObject) {
  expect_header_rejected([](json& h) { h["scheduler"] = json::array(); }, "scheduler", "expected a JSON object");
}
TEST(ModelFileReject, ProvenanceNotObject) {
  expect_header_rejected([](json& h) { h["provenance"] = nullptr; }, "provenance", "expected a JSON object");
}
TEST(ModelFileReject, ConditioningNotObject) {
  expect_header_rejected([](json& h) { h["conditioning"] = 5; }, "conditioning", "expected a JSON object");
}
TEST(ModelFileReject, NullClassOutOfRange) {
  expect_header_rejected([](json& h) { h["conditioning"]["null_class"] = 11; }, "conditioning.null_class", "out of range");
}
TEST(ModelFileReject, NumClassesWithoutClassInput) {
  expect_header_rejected([](json& h) {
    h["conditioning"] = {{"num_classes", 0}, {"null_class", -1}};
  }, "conditioning.num_classes", "class_labels");
}

// ---- tensor table -------------------------------------------------------------------------------

TEST(ModelFileReject, TensorsNotArray) {
  expect_header_rejected([](json& h) { h["tensors"] = json::object(); }, "tensors", "expected a JSON array");
}
TEST(ModelFileReject, TensorEmptyName) {
  expect_header_rejected([](json& h) { tensor(h, 7)["name"] = ""; }, "tensors[7].name", "empty tensor name");
}
TEST(ModelFileReject, TensorDuplicateName) {
  expect_header_rejected([](json& h) { tensor(h, 7)["name"] = "norm.bias"; }, "tensors[7].name",
                         "duplicate tensor \"norm.bias\"");
}
TEST(ModelFileReject, TensorUnknownDtype) {
  expect_header_rejected([](json& h) { tensor(h, 0)["dtype"] = "fp64"; }, "tensors[\"temb.table\"].dtype",
                         "unsupported dtype \"fp64\"");
}
TEST(ModelFileReject, TensorExtraField) {
  expect_header_rejected([](json& h) { tensor(h, 0)["stride"] = 1; }, "tensors[0]", "unexpected field \"stride\"");
}
TEST(ModelFileReject, TensorShapeNotArray) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = "10,8"; }, "tensors[\"temb.table\"].shape",
                         "expected a JSON array");
}
TEST(ModelFileReject, TensorShapeNegativeDim) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = {-10, -8}; }, "tensors[\"temb.table\"].shape[0]",
                         "out of range");
}
TEST(ModelFileReject, TensorShapeFloatDim) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = {10, 8.5}; }, "tensors[\"temb.table\"].shape[1]",
                         "expected an integer");
}
TEST(ModelFileReject, TensorRankTooHigh) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = {1, 1, 1, 1, 1, 1, 1, 1, 10, 8}; },
                         "tensors[\"temb.table\"].shape", "rank 10");
}
TEST(ModelFileReject, TensorShapeOverflow) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = {1ull << 32, 1ull << 32, 16}; },
                         "tensors[\"temb.table\"].shape", "overflows");
}
TEST(ModelFileReject, TensorByteSizeOverflow) {
  expect_header_rejected([](json& h) { tensor(h, 0)["shape"] = {INT64_MAX, 1}; },
                         "tensors[\"temb.table\"].shape", "overflows");
}
TEST(ModelFileReject, TensorNbytesMismatch) {
  expect_header_rejected([](json& h) { tensor(h, 0)["nbytes"] = 316; }, "tensors[\"temb.table\"].nbytes",
                         "shape and dtype need 320");
}
TEST(ModelFileReject, TensorNbytesString) {
  expect_header_rejected([](json& h) { tensor(h, 0)["nbytes"] = "320"; }, "tensors[\"temb.table\"].nbytes",
                         "non-negative integer");
}
TEST(ModelFileReject, TensorOffsetMisaligned) {
  expect_header_rejected([](json& h) { tensor(h, 1)["offset"] = 512 + 4; }, "tensors[\"conv_in.weight\"].offset",
                         "not 256-byte aligned");
}
TEST(ModelFileReject, TensorOffsetBeyondData) {
  expect_header_rejected([](json& h) { tensor(h, 1)["offset"] = align_up(h["data_size"].get<uint64_t>(), 256) + 256; },
                         "tensors[\"conv_in.weight\"].offset", "exceed data_size");
}
TEST(ModelFileReject, TensorOffsetOverflow) {
  expect_header_rejected([](json& h) { tensor(h, 1)["offset"] = UINT64_MAX - 255; },
                         "tensors[\"conv_in.weight\"].offset", "exceed data_size");
}
TEST(ModelFileReject, TensorsOverlap) {
  expect_header_rejected([](json& h) { tensor(h, 2)["offset"] = tensor(h, 1)["offset"]; }, "overlaps tensor");
}

// ---- graph --------------------------------------------------------------------------------------

TEST(ModelFileReject, GraphNotObject) {
  expect_header_rejected([](json& h) { h["graph"] = json::array(); }, "graph", "expected a JSON object");
}
TEST(ModelFileReject, UnknownOp) {
  expect_header_rejected([](json& h) { node(h, 5)["op"] = "softmax"; }, "graph.nodes[5].op", "unknown op \"softmax\"");
}
TEST(ModelFileReject, ChannelsZero) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["cin"] = 0; }, "graph.nodes[1].attrs.cin", "out of range");
}
TEST(ModelFileReject, ChannelsTooLarge) {
  expect_header_rejected([](json& h) { node(h, 3)["attrs"]["out"] = 1 << 20; }, "graph.nodes[3].attrs.out",
                         "out of range");
}
TEST(ModelFileReject, ChannelsNegativeAsUnsigned) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["cout"] = -16; }, "graph.nodes[1].attrs.cout");
}
TEST(ModelFileReject, ChannelsFloat) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["cout"] = 3.7; }, "graph.nodes[1].attrs.cout",
                         "expected an integer");
}
TEST(ModelFileReject, ChannelsString) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["cout"] = "16"; }, "graph.nodes[1].attrs.cout",
                         "expected an integer");
}
TEST(ModelFileReject, KernelTooLarge) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["kh"] = 9; }, "graph.nodes[1].attrs.kh", "out of range [1, 7]");
}
TEST(ModelFileReject, StrideTooLarge) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["stride"] = 5; }, "graph.nodes[1].attrs.stride");
}
TEST(ModelFileReject, PaddingNotLessThanKernel) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["pad_left"] = 3; }, "graph.nodes[1].attrs.pad_left");
}
TEST(ModelFileReject, AttrMissing) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"].erase("stride"); }, "graph.nodes[1].attrs.stride",
                         "missing required field");
}
TEST(ModelFileReject, AttrExtra) {
  expect_header_rejected([](json& h) { node(h, 1)["attrs"]["dilation"] = 2; }, "graph.nodes[1].attrs",
                         "unexpected field \"dilation\"");
}
TEST(ModelFileReject, BoolAttrAsInt) {
  expect_header_rejected([](json& h) { node(h, 2)["attrs"]["silu"] = 1; }, "graph.nodes[2].attrs.silu");
}
TEST(ModelFileReject, FloatAttrNull) {
  expect_header_rejected([](json& h) { node(h, 5)["attrs"]["scale"] = nullptr; }, "graph.nodes[5].attrs.scale",
                         "expected a number");
}
TEST(ModelFileReject, FloatAttrBeyondFloatRange) {
  expect_header_rejected([](json& h) { node(h, 5)["attrs"]["shift"] = 1e300; }, "graph.nodes[5].attrs.shift",
                         "does not fit a float");
}
TEST(ModelFileReject, GroupsDoNotDivideChannels) {
  expect_header_rejected([](json& h) { node(h, 2)["attrs"]["groups"] = 5; }, "graph.nodes[2].attrs.groups",
                         "do not divide");
}
TEST(ModelFileReject, EpsNotPositive) {
  expect_header_rejected([](json& h) { node(h, 2)["attrs"]["eps"] = 0.0; }, "graph.nodes[2].attrs.eps");
}
TEST(ModelFileReject, UnknownEmbMode) {
  expect_header_rejected([](json& h) { node(h, 2)["attrs"]["emb_mode"] = "film"; }, "graph.nodes[2].attrs.emb_mode",
                         "unknown value \"film\"");
}
TEST(ModelFileReject, EmbModeNoneWithTwoInputs) {
  expect_header_rejected([](json& h) { node(h, 2)["attrs"]["emb_mode"] = "none"; }, "graph.nodes[2].inputs",
                         "takes 1 input");
}
TEST(ModelFileReject, HeadsTimesHeadDimInconsistent) {
  expect_header_rejected([](json& h) { node(h, 4)["attrs"]["heads"] = 3; }, "graph.nodes[4].attrs",
                         "needs 72 channels");
}
TEST(ModelFileReject, HeadsTimesHeadDimTooLarge) {
  expect_header_rejected([](json& h) {
    node(h, 4)["attrs"]["heads"] = 1 << 10;
    node(h, 4)["attrs"]["head_dim"] = 1 << 10;
  }, "graph.nodes[4].attrs.heads", "heads*head_dim");
}
TEST(ModelFileReject, WrongInputCount) {
  expect_header_rejected([](json& h) { node(h, 7)["inputs"] = {9}; }, "graph.nodes[7].inputs", "concat takes 2..2");
}
TEST(ModelFileReject, ValueIdOutOfRange) {
  expect_header_rejected([](json& h) { node(h, 5)["inputs"] = {12}; }, "graph.nodes[5].inputs[0]", "out of range [0, 11]");
}
TEST(ModelFileReject, ValueIdNegative) {
  expect_header_rejected([](json& h) { node(h, 5)["output"] = -1; }, "graph.nodes[5].output", "out of range");
}
TEST(ModelFileReject, ValueProducedTwice) {
  expect_header_rejected([](json& h) { node(h, 6)["output"] = 8; }, "graph.nodes[6].output", "produced twice");
}
TEST(ModelFileReject, NodeOverwritesGraphInput) {
  expect_header_rejected([](json& h) { node(h, 1)["output"] = 0; }, "graph.nodes[1].output", "produced twice");
}
TEST(ModelFileReject, InputUsedBeforeProduced) {
  expect_header_rejected([](json& h) { std::swap(node(h, 5), node(h, 6)); }, "graph.nodes[5].inputs[0]",
                         "used before it is produced");
}
TEST(ModelFileReject, ValueNeverProduced) {
  expect_header_rejected([](json& h) { h["graph"]["values"].push_back("orphan"); }, "graph.values[12]",
                         "never produced");
}
TEST(ModelFileReject, DuplicateValueName) {
  expect_header_rejected([](json& h) { h["graph"]["values"][4] = "h1"; }, "graph.values[5]", "duplicate value name");
}
TEST(ModelFileReject, DuplicateNodeName) {
  expect_header_rejected([](json& h) { node(h, 6)["name"] = "aff"; }, "graph.nodes[6].name", "duplicate node name");
}
TEST(ModelFileReject, OutputIsGraphInput) {
  expect_header_rejected([](json& h) {
    h["graph"]["output"] = 0;
  }, "graph.output", "produced by a node");
}
TEST(ModelFileReject, MissingClassLabelsInputIsNeverProduced) {
  expect_header_rejected([](json& h) { h["graph"]["inputs"].erase("class_labels"); }, "graph.nodes[0].inputs[1]",
                         "used before it is produced");
}
TEST(ModelFileReject, DownsampleFactorOutOfRange) {
  // Any factor in [1, 1024] is valid (a DiT's is its patch size, e.g. 3); 0 and 2048 are not.
  expect_header_rejected([](json& h) { h["graph"]["downsample_factor"] = 0; }, "graph.downsample_factor", "out of range");
  expect_header_rejected([](json& h) { h["graph"]["downsample_factor"] = 2048; }, "graph.downsample_factor",
                         "out of range");
}
TEST(ModelFileReject, WeightRefersToMissingTensor) {
  expect_header_rejected([](json& h) { node(h, 3)["weights"]["weight"] = "ghost"; }, "graph.nodes[3].weights.weight",
                         "tensor \"ghost\" is not in the tensor table");
}
TEST(ModelFileReject, WeightNameNotString) {
  expect_header_rejected([](json& h) { node(h, 3)["weights"]["weight"] = 5; }, "graph.nodes[3].weights.weight",
                         "expected a string");
}
TEST(ModelFileReject, NodeExtraField) {
  expect_header_rejected([](json& h) { node(h, 3)["fused"] = true; }, "graph.nodes[3]", "unexpected field \"fused\"");
}


// ---- text-conditioned graphs and the VAE section ------------------------------------------------

// A denoiser with a text context: values 0 sample, 1 timestep, 2 ctx, 3 h, 4 ln, 5 q, 6 kv, 7 attn,
// 8 ff, 9 gated, 10 out. Plus a two-node VAE decoder reading 3 latent channels.
Graph text_graph() {
  Graph g;
  g.values = {"sample", "timestep", "encoder_hidden_states", "h", "ln", "q", "kv", "attn", "ff", "gated", "out"};
  g.sample = 0; g.timestep = 1; g.context = 2; g.context_dim = 6; g.output = 10;
  g.in_channels = 3; g.out_channels = 3;
  auto add = [&](std::string name, OpAttrs a, std::vector<int> in, int out, std::map<std::string, std::string> w) {
    Node n;
    n.name = std::move(name); n.attrs = a; n.inputs = std::move(in); n.output = out; n.weights = std::move(w);
    g.nodes.push_back(std::move(n));
  };
  Conv2dAttrs cin;
  cin.cin = 3; cin.cout = 8;
  add("conv_in", cin, {0}, 3, {{"weight", "conv_in.weight"}});
  add("ln", LayerNormAttrs{1e-5f}, {3}, 4, {{"weight", "ln.weight"}, {"bias", "ln.bias"}});
  add("to_q", LinearAttrs{8, 8, false, 1.0f}, {4}, 5, {{"weight", "to_q.weight"}});
  add("to_kv", LinearAttrs{6, 16, false, 1.0f}, {2}, 6, {{"weight", "to_kv.weight"}});
  add("attn2", AttentionAttrs{2, 4, 0.5f}, {5, 6}, 7, {});
  add("ff", LinearAttrs{8, 6, false, 1.0f}, {7}, 8, {{"weight", "ff.weight"}});
  add("geglu", GegluAttrs{}, {8}, 9, {});
  Conv2dAttrs cout;
  cout.cin = 3; cout.cout = 3;
  add("conv_out", cout, {9}, 10, {{"weight", "conv_out.weight"}});
  return g;
}
Graph vae_graph() {
  Graph g;
  g.values = {"sample", "z", "out"};
  g.sample = 0; g.output = 2; g.in_channels = 3; g.out_channels = 3;
  Node a;
  a.name = "scale"; a.attrs = AffineAttrs{5.0f, 0.0f}; a.inputs = {0}; a.output = 1;
  Node up;
  up.name = "up"; up.attrs = Upsample2xAttrs{}; up.inputs = {1}; up.output = 2;
  g.nodes = {a, up};
  return g;
}
std::vector<TensorBlob> text_tensors() {
  return {blob("conv_in.weight", DType::F32, {8, 3, 3, 3}, 1), blob("ln.weight", DType::F32, {8}, 2),
          blob("ln.bias", DType::F32, {8}, 3),                 blob("to_q.weight", DType::F32, {8, 8}, 4),
          blob("to_kv.weight", DType::F32, {16, 6}, 5),        blob("ff.weight", DType::F32, {6, 8}, 6),
          blob("conv_out.weight", DType::F32, {3, 3, 3, 3}, 7)};
}
std::vector<uint8_t> text_file() {
  VaeDecoder vae;
  vae.config = {{"latent_channels", 3}};
  vae.scaling_factor = 0.2;
  vae.graph = vae_graph();
  return serialize_model_file("unet2d_condition", json::object(), text_graph(), text_tensors(), json::object(),
                              Conditioning{}, json::object(), &vae);
}
std::vector<uint8_t> text_edited(const std::function<void(json&)>& edit) {
  Parts p = split(text_file());
  edit(p.header);
  return assemble(p.header.dump(), p.data);
}

TEST(ModelFileText, RoundTripKeepsContextAndVae) {
  std::vector<uint8_t> f = text_file();
  ModelFile m = parse_model_file(f.data(), f.size(), kOrigin);
  EXPECT_EQ(m.family, "unet2d_condition");
  EXPECT_EQ(m.graph.context, 2);
  EXPECT_EQ(m.graph.context_dim, 6);
  ASSERT_TRUE(m.vae.present());
  EXPECT_FLOAT_EQ(float(m.vae.scaling_factor), 0.2f);
  EXPECT_EQ(m.vae.graph.timestep, -1);
  EXPECT_EQ(m.vae.config["latent_channels"], 3);
  ASSERT_EQ(m.graph.nodes.size(), 8u);
  EXPECT_EQ(std::string(op_name(m.graph.nodes[1].attrs)), "layer_norm");
  EXPECT_FLOAT_EQ(std::get<LayerNormAttrs>(m.graph.nodes[1].attrs).eps, 1e-5f);
  EXPECT_EQ(m.graph.nodes[4].inputs, (std::vector<int>{5, 6}));
  EXPECT_EQ(std::string(op_name(m.graph.nodes[6].attrs)), "geglu");
  // Serialising what was read gives the same bytes.
  std::vector<uint8_t> again = serialize_model_file(m.family, m.config, m.graph, text_tensors(), m.scheduler,
                                                    m.conditioning, m.provenance, &m.vae);
  EXPECT_EQ(again, f);
}
TEST(ModelFileText, ContextDimWithoutContextInput) {
  expect_rejected(text_edited([](json& h) { h["graph"]["inputs"].erase("encoder_hidden_states"); }),
                  "graph.context_dim", "exactly when");
}
TEST(ModelFileText, ContextInputWithoutContextDim) {
  expect_rejected(text_edited([](json& h) { h["graph"].erase("context_dim"); }), "graph.context_dim");
}
TEST(ModelFileText, CrossAttentionKvChannelsChecked) {
  expect_rejected(text_edited([](json& h) { h["graph"]["nodes"][4]["attrs"]["head_dim"] = 8; }),
                  "graph.nodes[4].attrs", "needs");
}
TEST(ModelFileText, AttentionTakesAtMostTwoInputs) {
  expect_rejected(text_edited([](json& h) { h["graph"]["nodes"][4]["inputs"] = {5, 6, 6}; }),
                  "graph.nodes[4].inputs", "attention takes 1..2");
}
TEST(ModelFileText, LayerNormEpsOutOfRange) {
  expect_rejected(text_edited([](json& h) { h["graph"]["nodes"][1]["attrs"]["eps"] = 0.0; }),
                  "graph.nodes[1].attrs.eps", "(0, 1)");
}
TEST(ModelFileText, GegluTakesNoAttrs) {
  expect_rejected(text_edited([](json& h) { h["graph"]["nodes"][6]["attrs"]["approximate"] = true; }),
                  "graph.nodes[6].attrs", "unexpected field");
}
TEST(ModelFileText, DenoiserNeedsTimestep) {
  expect_rejected(text_edited([](json& h) { h["graph"]["inputs"].erase("timestep"); }), "graph");
}
TEST(ModelFileText, VaeScalingFactorNotPositive) {
  expect_rejected(text_edited([](json& h) { h["vae"]["scaling_factor"] = -1.0; }), "vae.scaling_factor");
}
TEST(ModelFileText, VaeGraphErrorsNameVaeGraph) {
  expect_rejected(text_edited([](json& h) { h["vae"]["graph"]["nodes"][0]["op"] = "nope"; }),
                  "vae.graph.nodes[0].op", "unknown op");
}
TEST(ModelFileText, VaeTakesLatentsOnly) {
  expect_rejected(text_edited([](json& h) {
    h["vae"]["graph"]["values"].push_back("t");
    h["vae"]["graph"]["inputs"]["timestep"] = 3;
  }), "vae.graph.inputs", "latents only");
}
TEST(ModelFileText, VaeLatentChannelsMatchDenoiser) {
  expect_rejected(text_edited([](json& h) { h["vae"]["graph"]["in_channels"] = 5; }), "vae.graph.in_channels");
}
TEST(ModelFileText, VaeUnknownField) {
  expect_rejected(text_edited([](json& h) { h["vae"]["encoder"] = json::object(); }), "vae", "unexpected field");
}

}  // namespace
}  // namespace diffrt
