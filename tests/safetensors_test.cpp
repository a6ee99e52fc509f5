// safetensors reader tests: round trips (memory, file, misaligned data, shards), then one test per
// rule of bad_inputs.md items 1-14 and 21, each corrupting one thing in an otherwise valid file
// and checking the error names the file and the tensor or field.
#include <gtest/gtest.h>

#include <algorithm>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/atomic_file.h"
#include "tests/test_util.h"
#include "weights_converter/safetensors.h"

namespace diffrt {
namespace {

namespace fs = std::filesystem;
const char* kOrigin = "m.safetensors";

SafeTensor make(const std::string& name, DType dt, std::vector<int64_t> shape, std::vector<float> vals) {
  SafeTensor t;
  t.name = name;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.bytes.resize(vals.size() * dtype_size(dt));
  if (!vals.empty()) from_f32(dt, vals.data(), t.bytes.data(), vals.size());
  return t;
}

// A raw file from header text and a data buffer.
std::vector<uint8_t> raw(const std::string& header, size_t buffer_bytes) {
  std::vector<uint8_t> f(8 + header.size() + buffer_bytes, 0);
  for (int i = 0; i < 8; ++i) f[size_t(i)] = uint8_t(uint64_t(header.size()) >> (8 * i));
  std::copy(header.begin(), header.end(), f.begin() + 8);
  return f;
}
// One tensor "w", F32 [2,2] at [0,16], in a 16-byte buffer, with `entry` replacing its JSON.
std::vector<uint8_t> one(const std::string& entry, size_t buffer_bytes = 16) {
  return raw("{\"w\":" + entry + "}", buffer_bytes);
}
const std::string kGood = R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

void expect_rejected(const std::vector<uint8_t>& f, const std::string& what, ErrorCode code = ErrorCode::InvalidModel) {
  try {
    parse_safetensors(f.data(), f.size(), kOrigin);
    FAIL() << "accepted; expected an error containing: " << what;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_EQ(msg.rfind(std::string(kOrigin) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

// ---- valid files --------------------------------------------------------------------------------

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  std::vector<SafeTensor> ts = {make("b.half", DType::F16, {3}, {1.5f, -2.0f, 0.25f}),
                                make("a.full", DType::F32, {2, 2}, {1, 2, 3, 4}),
                                make("c.brain", DType::BF16, {2}, {3.0f, -0.5f}),
                                make("d.empty", DType::F32, {0, 5}, {})};
  auto bytes = encode_safetensors(ts, {{"format", "pt"}});
  SafeTensorsFile f = parse_safetensors(bytes.data(), bytes.size(), kOrigin);
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors.at("a.full").to_f32(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(f.tensors.at("b.half").to_f32(), (std::vector<float>{1.5f, -2.0f, 0.25f}));
  EXPECT_EQ(f.tensors.at("c.brain").to_f32(), (std::vector<float>{3.0f, -0.5f}));
  EXPECT_EQ(f.tensors.at("c.brain").dtype, DType::BF16);
  EXPECT_EQ(f.tensors.at("d.empty").numel(), 0u);
  EXPECT_EQ(f.tensors.at("d.empty").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(f.tensors.at("a.full").file, kOrigin);
}

TEST(Safetensors, ReadFromDisk) {
  auto bytes = encode_safetensors({make("x", DType::F32, {3}, {7, 8, 9})});
  std::string path = test::temp_dir("st") + "/x.safetensors";
  write_file_atomic(path, bytes.data(), bytes.size());
  SafeTensorsFile f = read_safetensors(path);
  EXPECT_EQ(f.tensors.at("x").to_f32(), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(f.tensors.at("x").file, path);
}

TEST(Safetensors, MisalignedDataIsCopiedNotReinterpreted) {
  // Pads the header so the f32 buffer starts at a file offset of 3 mod 4 (item 13).
  std::string h = R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + h.size()) % 4 != 3) h += ' ';
  auto f = raw(h, 0);
  float vals[2] = {1.25f, -3.5f};
  const uint8_t* p = reinterpret_cast<const uint8_t*>(vals);
  f.insert(f.end(), p, p + 8);
  SafeTensorsFile st = parse_safetensors(f.data(), f.size(), kOrigin);
  EXPECT_EQ(st.tensors.at("v").to_f32(), (std::vector<float>{1.25f, -3.5f}));
  std::string path = test::temp_dir("st") + "/mis.safetensors";
  write_file_atomic(path, f.data(), f.size());
  EXPECT_EQ(read_safetensors(path).tensors.at("v").to_f32(), (std::vector<float>{1.25f, -3.5f}));
}

TEST(Safetensors, EmptyHeaderAndBufferIsValid) {
  auto f = raw("{}", 0);
  EXPECT_TRUE(parse_safetensors(f.data(), f.size(), kOrigin).tensors.empty());
}

// ---- 1-4: sizes and header ----------------------------------------------------------------------

TEST(SafetensorsReject, EmptyFile) { expect_rejected({}, "0 bytes, too small"); }
TEST(SafetensorsReject, SevenBytes) { expect_rejected(std::vector<uint8_t>(7, 0), "7 bytes, too small"); }
TEST(SafetensorsReject, SmallFileFromDisk) {
  std::string path = test::temp_dir("st") + "/tiny.safetensors";
  write_file_atomic(path, "abc", 3);
  try {
    read_safetensors(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": file is 3 bytes"), std::string::npos) << e.what();
  }
}
TEST(SafetensorsReject, HeaderLengthBeyondFile) {
  auto f = one(kGood);
  f[0] = 0xff;
  f[1] = 0x03;  // 1023 > file size - 8
  expect_rejected(f, "exceeds the file size");
}
TEST(SafetensorsReject, HeaderLengthAboveCap) {
  auto f = one(kGood);
  uint64_t n = 100'000'001;
  for (int i = 0; i < 8; ++i) f[size_t(i)] = uint8_t(n >> (8 * i));
  expect_rejected(f, "above the 100000000-byte cap");
}
TEST(SafetensorsReject, HeaderLengthHuge) {
  auto f = one(kGood);
  for (int i = 0; i < 8; ++i) f[size_t(i)] = 0xff;
  expect_rejected(f, "cap");
}
TEST(SafetensorsReject, HeaderNotJson) { expect_rejected(raw("{\"w\": nope}", 0), "not valid UTF-8 JSON"); }
TEST(SafetensorsReject, HeaderNotObject) { expect_rejected(raw("[1,2]", 0), "does not start with '{'"); }
TEST(SafetensorsReject, HeaderLeadingSpace) { expect_rejected(raw(" {}", 0), "does not start with '{'"); }
TEST(SafetensorsReject, HeaderInvalidUtf8) {
  expect_rejected(raw("{\"w\xff\":" + kGood + "}", 16), "UTF-8");
}
TEST(SafetensorsReject, HeaderTrailingGarbage) { expect_rejected(raw("{} x", 0), "not valid UTF-8 JSON"); }

// ---- 5-7: names, fields, dtypes -----------------------------------------------------------------

TEST(SafetensorsReject, DuplicateTensorName) {
  expect_rejected(raw("{\"w\":" + kGood + ",\"w\":" + kGood + "}", 16), "duplicate key \"w\"");
}
TEST(SafetensorsReject, EntryNotObject) { expect_rejected(one("[1,2,3]"), "tensor \"w\": expected a JSON object"); }
TEST(SafetensorsReject, MissingDtype) {
  expect_rejected(one(R"({"shape":[2,2],"data_offsets":[0,16]})"), "tensor \"w\".dtype: missing");
}
TEST(SafetensorsReject, MissingShape) {
  expect_rejected(one(R"({"dtype":"F32","data_offsets":[0,16]})"), "tensor \"w\".shape: missing");
}
TEST(SafetensorsReject, MissingOffsets) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2]})"), "tensor \"w\".data_offsets: missing");
}
TEST(SafetensorsReject, ExtraField) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16],"align":8})"),
                  "unexpected field \"align\"");
}
TEST(SafetensorsReject, DtypeNotString) {
  expect_rejected(one(R"({"dtype":4,"shape":[2,2],"data_offsets":[0,16]})"), "tensor \"w\".dtype: expected a string");
}
TEST(SafetensorsReject, ShapeNotArray) {
  expect_rejected(one(R"({"dtype":"F32","shape":"2,2","data_offsets":[0,16]})"), "tensor \"w\".shape: expected a JSON array");
}
TEST(SafetensorsReject, ShapeStringDim) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,"2"],"data_offsets":[0,16]})"), "tensor \"w\".shape[1]");
}
TEST(SafetensorsReject, OffsetNegative) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[-16,0]})"), "data_offsets[0]: expected a non-negative");
}
TEST(SafetensorsReject, OffsetFloat) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16.0]})"), "data_offsets[1]: expected a non-negative");
}
TEST(SafetensorsReject, OffsetString) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":["0",16]})"), "data_offsets[0]");
}
TEST(SafetensorsReject, OffsetsWrongLength) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]})"), "expected [begin, end]");
}
TEST(SafetensorsReject, UnsupportedDtypes) {
  for (const char* dt : {"F64", "I64", "U8", "F8_E4M3", "BOOL"}) {
    SCOPED_TRACE(dt);
    expect_rejected(one(std::string(R"({"dtype":")") + dt + R"(","shape":[2,2],"data_offsets":[0,16]})"),
                    std::string("unsupported dtype ") + dt + " in tensor \"w\"", ErrorCode::Unsupported);
  }
}
TEST(SafetensorsReject, UnknownDtype) {
  expect_rejected(one(R"({"dtype":"Q4_K","shape":[2,2],"data_offsets":[0,16]})"),
                  "unsupported dtype \"Q4_K\" in tensor \"w\" (not a safetensors dtype)");
}

// ---- 8-11: offsets, coverage, shapes ------------------------------------------------------------

TEST(SafetensorsReject, BeginAfterEnd) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[16,0]})"), "begin 16 > end 0");
}
TEST(SafetensorsReject, EndBeyondBuffer) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})", 12), "end 16 beyond the data buffer of 12");
}
TEST(SafetensorsReject, Overlap) {
  expect_rejected(raw(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
                  "overlaps tensor \"a\"");
}
TEST(SafetensorsReject, Hole) {
  expect_rejected(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20),
                  "tensor \"b\".data_offsets: hole of 4 unused bytes");
}
TEST(SafetensorsReject, HoleAtStart) {
  expect_rejected(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[4,20]})", 20), "hole of 4");
}
TEST(SafetensorsReject, TrailingBytesAfterLastTensor) {
  expect_rejected(one(kGood, 24), "tensors end at byte 16 but the data buffer has 24 bytes");
}
// One tensor entry (16-byte buffer) with a bad shape or size: the entry, and what the error must say.
struct BadShapeCase {
  const char* name;
  const char* entry;
  const char* what;
};
const BadShapeCase kBadShapeCases[] = {
    {"ShapeProductOverflow", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]})", "overflows"},
    {"ShapeBytesOverflow", R"({"dtype":"F32","shape":[9223372036854775807,2],"data_offsets":[0,16]})", "overflows"},
    {"ShapeNegative", R"({"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]})", "shape[0]: value -2 out of range"},
    {"ShapeAboveInt64", R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,16]})", "shape[0]"},
    {"RankTooHigh", R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2,2],"data_offsets":[0,16]})", "rank 10"},
    {"ByteSizeMismatch", R"({"dtype":"F16","shape":[2,2],"data_offsets":[0,16]})",
     "holds 16 bytes but shape and dtype need 8"},
};
void PrintTo(const BadShapeCase& c, std::ostream* os) { *os << c.name; }
class SafetensorsRejectShape : public ::testing::TestWithParam<BadShapeCase> {};
TEST_P(SafetensorsRejectShape, Rejected) { expect_rejected(one(GetParam().entry), GetParam().what); }
INSTANTIATE_TEST_SUITE_P(SafetensorsReject, SafetensorsRejectShape, ::testing::ValuesIn(kBadShapeCases),
                         [](const ::testing::TestParamInfo<BadShapeCase>& i) { return std::string(i.param.name); });

// ---- 12: metadata -------------------------------------------------------------------------------

TEST(SafetensorsReject, MetadataNonStringValue) {
  expect_rejected(raw("{\"__metadata__\":{\"total\":5},\"w\":" + kGood + "}", 16), "__metadata__.\"total\": expected a string");
}
TEST(SafetensorsReject, MetadataNotObject) {
  expect_rejected(raw("{\"__metadata__\":\"pt\",\"w\":" + kGood + "}", 16), "__metadata__: expected a JSON object");
}

// ---- encoder ------------------------------------------------------------------------------------

TEST(SafetensorsEncode, RefusesDuplicateAndBadSizes) {
  EXPECT_THROW(encode_safetensors({make("a", DType::F32, {1}, {1}), make("a", DType::F32, {1}, {2})}), Error);
  SafeTensor t = make("a", DType::F32, {2}, {1, 2});
  t.bytes.pop_back();
  EXPECT_THROW(encode_safetensors({t}), Error);
}

// ---- 21: sharded checkpoints --------------------------------------------------------------------

class Sharded : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("shards");
    write("s1.safetensors", encode_safetensors({make("a", DType::F32, {2}, {1, 2}), make("b", DType::F16, {1}, {3})}));
    write("s2.safetensors", encode_safetensors({make("c", DType::BF16, {2}, {4, 5})}));
  }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) {
    write_file_atomic(dir_ + "/" + name, bytes.data(), bytes.size());
  }
  void index(const std::string& weight_map) {
    std::string text = R"({"metadata":{"total_size":22},"weight_map":)" + weight_map + "}";
    write_file_atomic(dir_ + "/model.safetensors.index.json", text.data(), text.size());
  }
  void expect_rejected(const std::string& what) {
    try {
      read_sharded_safetensors(dir_, "model.safetensors.index.json");
      FAIL() << "accepted; expected: " << what;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
    }
  }
  const std::string kGoodMap = R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"})";
  std::string dir_;
};

TEST_F(Sharded, ReadsAllShards) {
  index(kGoodMap);
  SafeTensorsFile f = read_sharded_safetensors(dir_, "model.safetensors.index.json");
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors.at("a").to_f32(), (std::vector<float>{1, 2}));
  EXPECT_EQ(f.tensors.at("b").to_f32(), (std::vector<float>{3}));
  EXPECT_EQ(f.tensors.at("c").to_f32(), (std::vector<float>{4, 5}));
  EXPECT_NE(f.tensors.at("c").file.find("s2.safetensors"), std::string::npos);
}
TEST_F(Sharded, ShardInSubdirectoryIsAllowed) {
  fs::create_directories(dir_ + "/sub");
  write("sub/s3.safetensors", encode_safetensors({make("c", DType::BF16, {2}, {4, 5})}));
  fs::remove(dir_ + "/s2.safetensors");
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"sub/s3.safetensors"})");
  EXPECT_EQ(read_sharded_safetensors(dir_, "model.safetensors.index.json").tensors.size(), 3u);
}
TEST_F(Sharded, RejectsDotDotPath) {
  write("../x.safetensors", encode_safetensors({make("c", DType::BF16, {2}, {4, 5})}));
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"../x.safetensors"})");
  expect_rejected("weight_map.\"c\": path \"../x.safetensors\" has a '..' component");
  fs::remove(dir_ + "/../x.safetensors");
}
TEST_F(Sharded, RejectsDotDotInsideThePath) {
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"sub/../s2.safetensors"})");
  expect_rejected("'..' component");
}
TEST_F(Sharded, RejectsAbsolutePath) {
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":")" + dir_ + R"(/s2.safetensors"})");
  expect_rejected("absolute path");
}
TEST_F(Sharded, RejectsSymlinkEscapingTheDirectory) {
  std::string outside = test::temp_dir("outside") + "/evil.safetensors";
  write_file_atomic(outside, "x", 1);
  fs::create_symlink(outside, dir_ + "/link.safetensors");
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"link.safetensors"})");
  expect_rejected("weight_map.\"c\": shard \"link.safetensors\" resolves outside the model directory");
}
TEST_F(Sharded, RejectsSymlinkedSubdirectoryEscaping) {
  std::string outside = test::temp_dir("outside");
  write_file_atomic(outside + "/s2.safetensors", "x", 1);
  fs::create_directory_symlink(outside, dir_ + "/linkdir");
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"linkdir/s2.safetensors"})");
  expect_rejected("resolves outside the model directory");
}
TEST_F(Sharded, RejectsMissingShard) {
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s9.safetensors"})");
  expect_rejected("shard \"s9.safetensors\" not found");
}
TEST_F(Sharded, RejectsTensorInWrongShard) {
  index(R"({"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"})");
  expect_rejected("tensor \"b\" is mapped to shard \"s2.safetensors\" but found in shard \"s1.safetensors\"");
}
TEST_F(Sharded, RejectsTensorMissingFromItsShard) {
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors","d":"s2.safetensors"})");
  expect_rejected("weight_map.\"d\": tensor missing from its shard \"s2.safetensors\"");
}
TEST_F(Sharded, RejectsUnmappedTensor) {
  index(R"({"a":"s1.safetensors","c":"s2.safetensors"})");
  expect_rejected("tensor \"b\" in shard \"s1.safetensors\" is not listed in weight_map");
}
TEST_F(Sharded, RejectsDuplicateAcrossShards) {
  write("s2.safetensors", encode_safetensors({make("a", DType::F32, {2}, {1, 2}), make("c", DType::BF16, {2}, {4, 5})}));
  index(kGoodMap);
  expect_rejected("tensor \"a\" appears in two shards: \"s1.safetensors\" and \"s2.safetensors\"");
}
TEST_F(Sharded, RejectsDuplicateKeyInWeightMap) {
  index(R"({"a":"s1.safetensors","a":"s2.safetensors","b":"s1.safetensors","c":"s2.safetensors"})");
  expect_rejected("duplicate key \"a\"");
}
TEST_F(Sharded, RejectsNonStringShardName) {
  index(R"({"a":"s1.safetensors","b":"s1.safetensors","c":2})");
  expect_rejected("weight_map.\"c\": expected a string");
}
TEST_F(Sharded, RejectsEmptyWeightMap) {
  index("{}");
  expect_rejected("weight_map: is empty");
}
TEST_F(Sharded, RejectsCorruptShardNamingIt) {
  write("s2.safetensors", std::vector<uint8_t>{1, 2, 3});
  index(kGoodMap);
  try {
    read_sharded_safetensors(dir_, "model.safetensors.index.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s2.safetensors: file is 3 bytes"), std::string::npos) << e.what();
  }
}
TEST_F(Sharded, RejectsIndexNameEscaping) {
  EXPECT_THROW(read_sharded_safetensors(dir_, "../model.safetensors.index.json"), Error);
}

}  // namespace
}  // namespace diffrt
