// .npy tests: round trips through write_npy_f32/read_npy, integer arrays, then one test per
// rejection rule of the strict header parser and the payload-size check.
#include <gtest/gtest.h>

#include <cstring>

#include "base/error.h"
#include "base/atomic_file.h"
#include "base/npy.h"
#include "tests/test_util.h"

namespace diffrt {
namespace {

const char* kOrigin = "a.npy";

// A .npy file with this header dict text, padded like numpy, and `payload` bytes.
std::vector<uint8_t> npy(const std::string& dict, size_t payload_bytes, int major = 1) {
  std::string h = dict;
  size_t pre = major == 1 ? 10 : 12;
  while ((pre + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::vector<uint8_t> f = {0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0};
  for (size_t i = 0; i < pre - 8; ++i) f.push_back(uint8_t(h.size() >> (8 * i)));
  f.insert(f.end(), h.begin(), h.end());
  for (size_t i = 0; i < payload_bytes; ++i) f.push_back(uint8_t(i));
  return f;
}
std::string dict(const std::string& descr, const std::string& shape, const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

void expect_rejected(const std::vector<uint8_t>& f, const std::string& what, uint64_t cap = 1 << 20) {
  try {
    parse_npy(f.data(), f.size(), kOrigin, cap);
    FAIL() << "accepted; expected: " << what;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << msg;
    EXPECT_EQ(msg.rfind(std::string(kOrigin) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

TEST(Npy, RoundTripShapes) {
  const std::string dir = test::temp_dir("npy");
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {2, 3, 4}, {0, 3}, {1, 1, 1, 1, 7}};
  for (const auto& shape : shapes) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = float(i) * 0.5f - 3.0f;
    const std::string path = dir + "/x.npy";
    write_npy_f32(path, shape, v.data());
    NpyArray a = read_npy(path);
    EXPECT_EQ(a.type, NpyType::F32);
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.numel(), n);
    EXPECT_EQ(a.as_f32(), v);
    // numpy's layout: v1.0, header padded so the data starts at a multiple of 64.
    std::string raw = read_file_bytes(path, 1 << 20);
    EXPECT_EQ(raw[6], 1);
    EXPECT_EQ(raw[7], 0);
    EXPECT_EQ((raw.size() - n * 4) % 64, 0u);
  }
}

TEST(Npy, EncodesPythonTupleSyntax) {
  std::vector<float> five(5, 1.0f);
  auto e = encode_npy_f32({5}, five.data());
  std::string h(e.begin() + 10, e.begin() + 10 + e[8]);
  EXPECT_NE(h.find("'shape': (5,)"), std::string::npos) << h;
  float x = 1.0f;
  auto s = encode_npy_f32({}, &x);
  std::string hs(s.begin() + 10, s.begin() + 10 + s[8]);
  EXPECT_NE(hs.find("'shape': ()"), std::string::npos) << hs;
  EXPECT_EQ(s.size(), 128u + 4u);  // np.save of a float32 scalar is 132 bytes
  EXPECT_THROW(encode_npy_f32({-1}, &x), Error);
}

TEST(Npy, EncoderMatchesNumpyBytes) {
  // np.save(f, np.arange(6, dtype='<f4').reshape(2, 3)) writes exactly these 128 header bytes
  // (numpy 1.x/2.x: v1.0, header length 118 = 'v', dict padded with spaces to a 64-byte boundary).
  std::string want = std::string("\x93NUMPY\x01\x00v\x00", 10) +
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + std::string(58, ' ') + "\n";
  ASSERT_EQ(want.size(), 128u);
  std::vector<float> v = {0, 1, 2, 3, 4, 5};
  auto e = encode_npy_f32({2, 3}, v.data());
  ASSERT_EQ(e.size(), 152u);
  EXPECT_EQ(std::string(e.begin(), e.begin() + 128), want);
  EXPECT_EQ(std::memcmp(e.data() + 128, v.data(), 24), 0);
  NpyArray a = parse_npy(e.data(), e.size(), kOrigin, 1 << 20);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.as_f32(), v);
}

TEST(Npy, ReadsIntegerArrays) {
  auto f = npy(dict("<i8", "(3,)"), 0);
  int64_t v8[3] = {-1, 2, 1LL << 40};
  const uint8_t* p = reinterpret_cast<const uint8_t*>(v8);
  f.insert(f.end(), p, p + 24);
  NpyArray a = parse_npy(f.data(), f.size(), kOrigin, 1 << 20);
  EXPECT_EQ(a.type, NpyType::I64);
  EXPECT_EQ(a.as_i64(), (std::vector<int64_t>{-1, 2, 1LL << 40}));
  EXPECT_THROW(a.as_f32(), Error);

  auto g = npy(dict("<i4", "(2, 1)"), 0);
  int32_t v4[2] = {-7, 9};
  p = reinterpret_cast<const uint8_t*>(v4);
  g.insert(g.end(), p, p + 8);
  NpyArray b = parse_npy(g.data(), g.size(), kOrigin, 1 << 20);
  EXPECT_EQ(b.type, NpyType::I32);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(b.as_i64(), (std::vector<int64_t>{-7, 9}));
}

TEST(Npy, AcceptsVersion2AndDoubleQuotes) {
  auto f = npy("{\"descr\": \"<f4\", \"shape\": (2,), \"fortran_order\": False}", 8, 2);
  NpyArray a = parse_npy(f.data(), f.size(), kOrigin, 1 << 20);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
}

TEST(NpyReject, BadMagic) {
  auto f = npy(dict("<f4", "(2,)"), 8);
  f[1] = 'X';
  expect_rejected(f, "bad magic");
}
TEST(NpyReject, TooShort) { expect_rejected(std::vector<uint8_t>{0x93, 'N', 'U'}, "bad magic"); }
TEST(NpyReject, Version3) { expect_rejected(npy(dict("<f4", "(2,)"), 8, 3), "unsupported .npy version 3.0"); }
TEST(NpyReject, MinorVersion) {
  auto f = npy(dict("<f4", "(2,)"), 8);
  f[7] = 1;
  expect_rejected(f, "unsupported .npy version 1.1");
}
TEST(NpyReject, HeaderLengthBeyondFile) {
  auto f = npy(dict("<f4", "(2,)"), 0);
  f[8] = 0xff;
  f[9] = 0x7f;
  expect_rejected(f, "exceeds the file size");
}
TEST(NpyReject, HeaderWithoutNewline) {
  auto f = npy(dict("<f4", "(2,)"), 8);
  f[10 + f[8] - 1] = ' ';
  expect_rejected(f, "does not end with a newline");
}
TEST(NpyReject, UnsupportedDtypeNamed) {
  expect_rejected(npy(dict("<f8", "(2,)"), 16), "unsupported npy dtype \"<f8\"");
  expect_rejected(npy(dict(">f4", "(2,)"), 8), "unsupported npy dtype \">f4\"");
  expect_rejected(npy(dict("|u1", "(2,)"), 2), "unsupported npy dtype \"|u1\"");
  expect_rejected(npy(dict("|O", "(2,)"), 16), "unsupported npy dtype \"|O\"");
}
TEST(NpyReject, FortranOrder) { expect_rejected(npy(dict("<f4", "(2, 2)", "True"), 16), "'fortran_order': True"); }
TEST(NpyReject, FortranOrderNotBool) { expect_rejected(npy(dict("<f4", "(2,)", "0"), 8), "must be True or False"); }
TEST(NpyReject, NegativeDim) { expect_rejected(npy(dict("<f4", "(-2,)"), 8), "negative dimension"); }
TEST(NpyReject, FloatDim) { expect_rejected(npy(dict("<f4", "(2.5,)"), 8), "expected ','"); }
TEST(NpyReject, DimOverflowsInt64) { expect_rejected(npy(dict("<f4", "(99999999999999999999,)"), 8), "overflows int64"); }
TEST(NpyReject, ShapeProductOverflows) {
  expect_rejected(npy(dict("<f4", "(4294967296, 4294967296)"), 8), "element count overflows");
}
TEST(NpyReject, ShapeBytesOverflow) {
  expect_rejected(npy(dict("<i8", "(4611686018427387904,)"), 8), "payload size overflows");
}
TEST(NpyReject, OneDimWithoutComma) { expect_rejected(npy(dict("<f4", "(2)"), 8), "trailing comma"); }
TEST(NpyReject, ShapeNotTuple) { expect_rejected(npy(dict("<f4", "[2]"), 8), "to open 'shape'"); }
TEST(NpyReject, PayloadTooShort) { expect_rejected(npy(dict("<f4", "(2, 3)"), 20), "payload is 20 bytes, shape and dtype need 24"); }
TEST(NpyReject, PayloadTooLong) { expect_rejected(npy(dict("<f4", "(2, 3)"), 28), "payload is 28 bytes"); }
TEST(NpyReject, PayloadAboveCap) { expect_rejected(npy(dict("<f4", "(1000,)"), 4000), "above the limit of 100", 100); }
TEST(NpyReject, MissingKey) {
  expect_rejected(npy("{'descr': '<f4', 'shape': (2,), }", 8), "missing key 'fortran_order'");
}
TEST(NpyReject, ExtraKey) {
  expect_rejected(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", 8), "unexpected key \"x\"");
}
TEST(NpyReject, DuplicateKey) {
  expect_rejected(npy("{'descr': '<f4', 'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 8),
                  "duplicate key \"descr\"");
}
TEST(NpyReject, TextAfterDict) {
  expect_rejected(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk", 8), "unexpected text after");
}
TEST(NpyReject, NotADict) { expect_rejected(npy("['<f4', False, (2,)]", 8), "to open the header dict"); }
TEST(NpyReject, UnterminatedString) { expect_rejected(npy("{'descr: 1", 8), "unterminated string"); }
TEST(NpyReject, MissingFileIsIoError) {
  try {
    read_npy("/nonexistent/q.npy");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/q.npy"), std::string::npos);
  }
}
TEST(NpyReject, ReadNpyNamesThePath) {
  const std::string path = test::temp_dir("npy") + "/bad.npy";
  auto f = npy(dict("<f4", "(2, 3)"), 20);
  write_file_atomic(path, f.data(), f.size());
  try {
    read_npy(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": npy payload is 20 bytes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffrt
