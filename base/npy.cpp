// .npy reader/writer. The reader is strict: magic, version 1.0/2.0, a header that is exactly the
// Python dict numpy writes ({'descr': ..., 'fortran_order': False, 'shape': (...), } + spaces +
// '\n'), descr '<f4' / '<i8' / '<i4' only, overflow-checked shape, exact payload size.
#include "base/npy.h"

#include <cstring>

#include "base/checked_math.h"
#include "base/error.h"
#include "base/atomic_file.h"
#include "base/strict_json.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy payloads are read as little-endian");

namespace diffrt {

namespace {
constexpr char kNpyMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kMaxNpyHeader = 1 << 16;
constexpr size_t kMaxNpyRank = 32;

size_t itemsize(NpyType t) { return t == NpyType::I64 ? 8 : 4; }

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw Error(ErrorCode::InvalidArgument, origin + ": " + what);
}

// A tiny recursive-descent parser for the header dict; any deviation is an error.
struct HeaderParser {
  const std::string& s;
  const std::string& origin;
  size_t i = 0;

  void ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i; }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) { ++i; return true; }
    return false;
  }
  void expect(char c, const char* where) {
    if (!eat(c)) bad(origin, std::string("npy header: expected '") + c + "' " + where);
  }
  std::string str() {
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) bad(origin, "npy header: expected a quoted string");
    char q = s[i++];
    size_t start = i;
    while (i < s.size() && s[i] != q) {
      if (s[i] == '\\') bad(origin, "npy header: escapes are not allowed in strings");
      ++i;
    }
    if (i >= s.size()) bad(origin, "npy header: unterminated string");
    return s.substr(start, i++ - start);
  }
  bool boolean() {
    ws();
    if (s.compare(i, 4, "True") == 0) { i += 4; return true; }
    if (s.compare(i, 5, "False") == 0) { i += 5; return false; }
    bad(origin, "npy header: 'fortran_order' must be True or False");
  }
  int64_t dim() {
    ws();
    if (i < s.size() && s[i] == '-') bad(origin, "npy header: 'shape' has a negative dimension");
    if (i >= s.size() || s[i] < '0' || s[i] > '9') bad(origin, "npy header: 'shape' must be a tuple of integers");
    uint64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (!mul_ok(v, 10, &v) || !add_ok(v, uint64_t(s[i] - '0'), &v) || v > uint64_t(INT64_MAX))
        bad(origin, "npy header: 'shape' dimension overflows int64");
      ++i;
    }
    return int64_t(v);
  }
  std::vector<int64_t> shape() {
    expect('(', "to open 'shape'");
    std::vector<int64_t> out;
    if (eat(')')) return out;
    for (;;) {
      out.push_back(dim());
      if (out.size() > kMaxNpyRank) bad(origin, "npy header: 'shape' rank above " + std::to_string(kMaxNpyRank));
      if (eat(')')) {
        if (out.size() == 1) bad(origin, "npy header: 1-d 'shape' needs a trailing comma, as in (5,)");
        return out;
      }
      expect(',', "between 'shape' dimensions");
      if (eat(')')) return out;
    }
  }
};
}  // namespace

uint64_t NpyArray::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);  // validated when parsed
  return n;
}

std::vector<float> NpyArray::as_f32() const {
  if (type != NpyType::F32) throw Error(ErrorCode::InvalidArgument, "npy array is not float32 ('<f4')");
  std::vector<float> out(bytes.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

std::vector<int64_t> NpyArray::as_i64() const {
  if (type == NpyType::I64) {
    std::vector<int64_t> out(bytes.size() / 8);
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 8);
    return out;
  }
  if (type == NpyType::I32) {
    std::vector<int64_t> out(bytes.size() / 4);
    for (size_t k = 0; k < out.size(); ++k) {
      int32_t v;
      std::memcpy(&v, bytes.data() + 4 * k, 4);
      out[k] = v;
    }
    return out;
  }
  throw Error(ErrorCode::InvalidArgument, "npy array is not an integer array ('<i8' or '<i4')");
}

NpyArray parse_npy(const uint8_t* data, size_t size, const std::string& origin, uint64_t max_bytes) {
  if (size < 10 || std::memcmp(data, kNpyMagic, 6) != 0) bad(origin, "not a .npy file (bad magic)");
  const uint8_t major = data[6], minor = data[7];
  if ((major != 1 && major != 2) || minor != 0)
    bad(origin, "unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor) +
                    " (1.0 and 2.0 are supported)");
  size_t pre = major == 1 ? 10 : 12;
  if (size < pre) bad(origin, "truncated .npy preamble");
  uint64_t hlen = major == 1 ? uint64_t(data[8]) | uint64_t(data[9]) << 8
                             : uint64_t(data[8]) | uint64_t(data[9]) << 8 | uint64_t(data[10]) << 16 |
                                   uint64_t(data[11]) << 24;
  if (hlen > kMaxNpyHeader) bad(origin, "npy header length " + std::to_string(hlen) + " above the limit");
  if (hlen > size - pre) bad(origin, "npy header length " + std::to_string(hlen) + " exceeds the file size");
  std::string h(reinterpret_cast<const char*>(data + pre), size_t(hlen));
  if (h.empty() || h.back() != '\n') bad(origin, "npy header does not end with a newline");
  h.pop_back();

  HeaderParser p{h, origin};
  std::string descr;
  bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
  std::vector<int64_t> shape;
  p.expect('{', "to open the header dict");
  while (!p.eat('}')) {
    std::string key = p.str();
    p.expect(':', "after a header key");
    bool* seen = key == "descr" ? &have_descr : key == "fortran_order" ? &have_fortran
                : key == "shape" ? &have_shape : nullptr;
    if (!seen) bad(origin, "npy header: unexpected key " + quote_for_error(key));
    if (*seen) bad(origin, "npy header: duplicate key " + quote_for_error(key));
    *seen = true;
    if (key == "descr") descr = p.str();
    else if (key == "fortran_order") fortran = p.boolean();
    else shape = p.shape();
    if (!p.eat(',')) { p.expect('}', "to close the header dict"); break; }
  }
  p.ws();
  if (p.i != h.size()) bad(origin, "npy header: unexpected text after the dict");
  if (!have_descr || !have_fortran || !have_shape)
    bad(origin, std::string("npy header: missing key '") +
                    (!have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape") + "'");
  NpyArray a;
  if (descr == "<f4") a.type = NpyType::F32;
  else if (descr == "<i8") a.type = NpyType::I64;
  else if (descr == "<i4") a.type = NpyType::I32;
  else bad(origin, "unsupported npy dtype " + quote_for_error(descr) + " (supported: '<f4', '<i8', '<i4')");
  if (fortran) bad(origin, "npy 'fortran_order': True is not supported (C order only)");

  uint64_t numel = 1, nbytes = 0;
  for (int64_t d : shape)
    if (!mul_ok(numel, uint64_t(d), &numel)) bad(origin, "npy shape element count overflows");
  if (!mul_ok(numel, itemsize(a.type), &nbytes)) bad(origin, "npy payload size overflows");
  if (nbytes > max_bytes)
    bad(origin, "npy payload of " + std::to_string(nbytes) + " bytes above the limit of " + std::to_string(max_bytes));
  const uint64_t avail = size - pre - hlen;
  if (avail != nbytes)
    bad(origin, "npy payload is " + std::to_string(avail) + " bytes, shape and dtype need " + std::to_string(nbytes));
  a.shape = std::move(shape);
  const uint8_t* payload = data + pre + hlen;
  a.bytes.assign(payload, payload + nbytes);
  return a;
}

NpyArray read_npy(const std::string& path, uint64_t max_bytes) {
  uint64_t cap = max_bytes;
  if (!add_ok(cap, 12 + kMaxNpyHeader, &cap)) cap = UINT64_MAX;
  std::string raw = read_file_bytes(path, cap);
  return parse_npy(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), path, max_bytes);
}

std::vector<uint8_t> encode_npy_f32(const std::vector<int64_t>& shape, const float* data) {
  uint64_t numel = 1, nbytes = 0;
  std::string dims;
  for (size_t k = 0; k < shape.size(); ++k) {
    const int64_t d = shape[k];
    if (d < 0) throw Error(ErrorCode::InvalidArgument, "encode_npy_f32: negative dimension " + std::to_string(d));
    if (!mul_ok(numel, uint64_t(d), &numel)) throw Error(ErrorCode::InvalidArgument, "encode_npy_f32: shape overflows");
    dims += (k ? ", " : "") + std::to_string(d);
  }
  if (shape.size() == 1) dims += ",";  // Python's 1-tuple: (5,)
  if (!mul_ok(numel, 4, &nbytes) || nbytes > uint64_t(SIZE_MAX / 2))
    throw Error(ErrorCode::InvalidArgument, "encode_npy_f32: payload size overflows");
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = align_up(10 + h.size() + 1, 64);  // numpy pads the preamble+header to 64 bytes
  h.append(total - 10 - h.size() - 1, ' ');
  h += '\n';
  if (h.size() > 0xffff) throw Error(ErrorCode::InvalidArgument, "encode_npy_f32: header too long");
  std::vector<uint8_t> out(total + size_t(nbytes));
  std::memcpy(out.data(), kNpyMagic, 6);
  out[6] = 1;  // version 1.0
  out[7] = 0;
  out[8] = uint8_t(h.size() & 0xff);
  out[9] = uint8_t(h.size() >> 8);
  std::memcpy(out.data() + 10, h.data(), h.size());
  if (nbytes) std::memcpy(out.data() + total, data, size_t(nbytes));
  return out;
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::vector<uint8_t> bytes = encode_npy_f32(shape, data);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace diffrt
