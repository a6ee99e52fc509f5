// safetensors reader (single file and sharded index) and encoder. Untrusted input: the header is
// size-capped and bounds-checked before any allocation, parsed as strict JSON (no duplicate
// names), every field type-checked, and the tensors must tile the byte buffer exactly (no
// overlap, no hole, nothing after the last tensor). Bytes are copied out, never reinterpreted.
#include "weights_converter/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/checked_math.h"
#include "base/error.h"
#include "base/atomic_file.h"
#include "base/strict_json.h"

namespace diffrt {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // same cap as the Rust safetensors crate
constexpr uint64_t kMaxIndexBytes = 100'000'000;
constexpr size_t kMaxRank = 8;

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

// Valid safetensors dtypes we do not load (refused as Unsupported, by name).
bool known_unsupported(const std::string& s) {
  static const char* kKnown[] = {"F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
                                 "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
                                 "C64", "C128"};
  for (const char* k : kKnown)
    if (s == k) return true;
  return false;
}

// Element size of the integer/bool dtypes a caller may ask to skip (0: not skippable).
uint64_t skippable_size(const std::string& s) {
  if (s == "I64" || s == "U64") return 8;
  if (s == "I32" || s == "U32") return 4;
  if (s == "I16" || s == "U16") return 2;
  if (s == "I8" || s == "U8" || s == "BOOL") return 1;
  return 0;
}

struct Entry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
  bool skipped = false;  // an integer tensor the caller listed: validated, not loaded
};

// Parses and validates the JSON header against a byte buffer of `buffer_size` bytes.
std::vector<Entry> parse_header(std::string_view text, uint64_t buffer_size, const JsonCheck& c,
                                std::map<std::string, std::string>* metadata, const std::set<std::string>& skip) {
  if (text.empty() || text[0] != '{') c.fail("header", "does not start with '{'");
  json h = c.parse_strict(text, "header");
  c.object(h, "header");
  std::vector<Entry> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      c.object(*it, "__metadata__");
      for (auto m = it->begin(); m != it->end(); ++m)
        (*metadata)[m.key()] = c.string(*m, json_path("__metadata__", quote_for_error(m.key())));
      continue;
    }
    const std::string tq = "tensor " + quote_for_error(name);
    if (name.empty()) c.fail(tq, "empty tensor name");
    c.object(*it, tq);
    c.only_keys(*it, tq, {"dtype", "shape", "data_offsets"});
    Entry e;
    e.name = name;
    const std::string dt = c.string_at(*it, tq, "dtype");
    uint64_t elem = 0;
    if (skip.count(name) && (elem = skippable_size(dt)) != 0) e.skipped = true;
    else if (dt == "F32") e.dtype = DType::F32;
    else if (dt == "F16") e.dtype = DType::F16;
    else if (dt == "BF16") e.dtype = DType::BF16;
    else if (known_unsupported(dt))
      c.fail_code(ErrorCode::Unsupported, "", "unsupported dtype " + dt + " in " + tq +
                                                  " (supported: F32, F16, BF16)");
    else
      c.fail("", "unsupported dtype " + quote_for_error(dt) + " in " + tq + " (not a safetensors dtype)");

    const std::string sp = json_path(tq, "shape");
    const json& shape = c.array(c.member(*it, tq, "shape"), sp);
    if (shape.size() > kMaxRank) c.fail(sp, "rank " + std::to_string(shape.size()) + " above " + std::to_string(kMaxRank));
    uint64_t numel = 1, nbytes = 0;
    for (size_t i = 0; i < shape.size(); ++i) {
      int64_t d = c.int_in(shape[i], json_index(sp, i), 0, INT64_MAX);
      e.shape.push_back(d);
      if (!mul_ok(numel, uint64_t(d), &numel)) c.fail(sp, "element count overflows 64 bits");
    }
    if (!mul_ok(numel, e.skipped ? elem : dtype_size(e.dtype), &nbytes)) c.fail(sp, "byte size overflows 64 bits");

    const std::string op = json_path(tq, "data_offsets");
    const json& offs = c.array(c.member(*it, tq, "data_offsets"), op);
    if (offs.size() != 2) c.fail(op, "expected [begin, end]");
    e.begin = c.u64(offs[0], json_index(op, 0));
    e.end = c.u64(offs[1], json_index(op, 1));
    if (e.begin > e.end) c.fail(op, "begin " + std::to_string(e.begin) + " > end " + std::to_string(e.end));
    if (e.end > buffer_size)
      c.fail(op, "end " + std::to_string(e.end) + " beyond the data buffer of " + std::to_string(buffer_size) + " bytes");
    if (e.end - e.begin != nbytes)
      c.fail(op, "holds " + std::to_string(e.end - e.begin) + " bytes but shape and dtype need " + std::to_string(nbytes));
    out.push_back(std::move(e));
  }
  // The tensors must tile the buffer exactly: no overlap (aliasing), no hole, no trailing bytes.
  std::vector<const Entry*> order;
  for (const Entry& e : out) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    const std::string tq = "tensor " + quote_for_error(e->name);
    if (e->begin < cursor)
      c.fail(json_path(tq, "data_offsets"), "overlaps tensor " + quote_for_error(prev->name));
    if (e->begin > cursor)
      c.fail(json_path(tq, "data_offsets"), "hole of " + std::to_string(e->begin - cursor) +
                                                " unused bytes before this tensor");
    cursor = e->end;
    prev = e;
  }
  if (cursor != buffer_size)
    c.fail("data", "tensors end at byte " + std::to_string(cursor) + " but the data buffer has " +
                       std::to_string(buffer_size) + " bytes");
  return out;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks the 8-byte length prefix against the file size, before anything is allocated.
void check_header_length(uint64_t n, uint64_t file_size, const JsonCheck& c) {
  if (n > kMaxHeader)
    c.fail("header", "length " + std::to_string(n) + " above the " + std::to_string(kMaxHeader) + "-byte cap");
  if (n > file_size - 8)
    c.fail("header", "length " + std::to_string(n) + " exceeds the file size " + std::to_string(file_size) + " - 8");
}

SafeTensor make_tensor(Entry&& e, const std::string& origin) {
  SafeTensor t;
  t.name = std::move(e.name);
  t.dtype = e.dtype;
  t.shape = std::move(e.shape);
  t.file = origin;
  t.bytes.resize(size_t(e.end - e.begin));
  return t;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
 private:
  int fd_;
};

void pread_full(int fd, void* dst, uint64_t n, uint64_t off, const std::string& path) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, size_t(std::min<uint64_t>(n, 1ull << 30)), off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(ErrorCode::Io, path + ": read failed: " + std::strerror(errno));
    if (r == 0) throw Error(ErrorCode::Io, path + ": file truncated while being read");
    p += r;
    off += uint64_t(r);
    n -= uint64_t(r);
  }
}

// A shard or index name from an untrusted index: a plain relative path with no '..'.
void check_relative_name(const std::string& name, const JsonCheck& c, const std::string& path) {
  if (name.empty()) c.fail(path, "empty file name");
  if (name.find('\0') != std::string::npos) c.fail(path, "file name contains a NUL byte");
  fs::path p(name);
  if (p.is_absolute() || name[0] == '/') c.fail(path, "absolute path " + quote_for_error(name) + " not allowed");
  for (const fs::path& part : p)
    if (part == "..") c.fail(path, "path " + quote_for_error(name) + " has a '..' component");
}

bool is_inside(const fs::path& root, const fs::path& p) {
  auto q = p.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++q)
    if (q == p.end() || *q != *r) return false;
  return q != p.end();
}

}  // namespace

uint64_t SafeTensor::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);  // validated when parsed
  return n;
}

std::vector<float> SafeTensor::to_f32() const {
  const uint64_t n = numel();
  if (bytes.size() != n * dtype_size(dtype))
    throw Error(ErrorCode::Internal, file + ": tensor " + quote_for_error(name) + ": byte size does not match shape");
  std::vector<float> out(static_cast<size_t>(n));
  if (n) diffrt::to_f32(dtype, bytes.data(), out.data(), size_t(n));
  return out;
}

SafeTensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& origin,
                                  const std::set<std::string>& skip) {
  JsonCheck c(origin);
  if (size < 8) c.fail("", "file is " + std::to_string(size) + " bytes, too small for a safetensors header");
  const uint64_t n = read_u64_le(data);
  check_header_length(n, size, c);
  SafeTensorsFile f;
  std::string_view text(reinterpret_cast<const char*>(data + 8), size_t(n));
  std::vector<Entry> entries = parse_header(text, size - 8 - n, c, &f.metadata, skip);
  const uint8_t* buf = data + 8 + n;
  for (Entry& e : entries) {
    if (e.skipped) {
      f.skipped.insert(e.name);
      continue;
    }
    const uint64_t begin = e.begin;
    SafeTensor t = make_tensor(std::move(e), origin);
    if (!t.bytes.empty()) std::memcpy(t.bytes.data(), buf + begin, t.bytes.size());
    f.tensors.emplace(t.name, std::move(t));
  }
  return f;
}

SafeTensorsFile read_safetensors(const std::string& path, const std::set<std::string>& skip) {
  JsonCheck c(path);
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw Error(ErrorCode::Io, path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error(ErrorCode::Io, path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::Io, path + ": not a regular file");
  const uint64_t size = uint64_t(st.st_size);  // taken once; short reads later are errors
  if (size < 8) c.fail("", "file is " + std::to_string(size) + " bytes, too small for a safetensors header");
  uint8_t len[8];
  pread_full(fd.get(), len, 8, 0, path);
  const uint64_t n = read_u64_le(len);
  check_header_length(n, size, c);
  std::string text(size_t(n), '\0');
  pread_full(fd.get(), text.data(), n, 8, path);
  SafeTensorsFile f;
  std::vector<Entry> entries = parse_header(text, size - 8 - n, c, &f.metadata, skip);
  for (Entry& e : entries) {
    if (e.skipped) {
      f.skipped.insert(e.name);
      continue;
    }
    const uint64_t off = 8 + n + e.begin;
    SafeTensor t = make_tensor(std::move(e), path);
    pread_full(fd.get(), t.bytes.data(), t.bytes.size(), off, path);
    f.tensors.emplace(t.name, std::move(t));
  }
  return f;
}

SafeTensorsFile read_sharded_safetensors(const std::string& dir, const std::string& index_name,
                                         const std::set<std::string>& skip) {
  JsonCheck dc(dir);
  check_relative_name(index_name, dc, "index");
  std::error_code ec;
  const fs::path root = fs::canonical(dir, ec);
  if (ec) throw Error(ErrorCode::Io, dir + ": cannot resolve the model directory: " + ec.message());
  const std::string index_path = (fs::path(dir) / index_name).string();
  JsonCheck c(index_path);
  const std::string text = read_file_bytes(index_path, kMaxIndexBytes);
  json j = c.parse_strict(text, "index");
  c.object(j, "");
  c.only_keys(j, "", {"metadata", "weight_map"});
  if (j.contains("metadata")) c.object(j["metadata"], "metadata");
  const json& wm = c.object(c.member(j, "", "weight_map"), "weight_map");
  if (wm.empty()) c.fail("weight_map", "is empty");

  std::map<std::string, std::string> want;          // tensor -> canonical shard path
  std::map<std::string, std::string> shard_names;   // canonical shard path -> name in the index
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    const std::string p = json_path("weight_map", quote_for_error(it.key()));
    const std::string name = c.string(*it, p);
    check_relative_name(name, c, p);
    const fs::path canon = fs::weakly_canonical(root / name, ec);
    if (ec) c.fail(p, "cannot resolve shard " + quote_for_error(name) + ": " + ec.message());
    if (!is_inside(root, canon))
      c.fail(p, "shard " + quote_for_error(name) + " resolves outside the model directory (symlink?)");
    if (!fs::exists(canon, ec)) c.fail(p, "shard " + quote_for_error(name) + " not found");
    if (!fs::is_regular_file(canon, ec)) c.fail(p, "shard " + quote_for_error(name) + " is not a regular file");
    want[it.key()] = canon.string();
    shard_names.emplace(canon.string(), name);
  }

  std::map<std::string, SafeTensorsFile> shards;
  for (const auto& s : shard_names) shards.emplace(s.first, read_safetensors(s.first, skip));
  std::map<std::string, std::vector<std::string>> where;  // tensor -> canonical shards holding it
  for (const auto& s : shards) {
    for (const auto& t : s.second.tensors) where[t.first].push_back(s.first);
    for (const auto& t : s.second.skipped) where[t].push_back(s.first);
  }

  for (const auto& w : where) {
    const std::string tq = "tensor " + quote_for_error(w.first);
    if (w.second.size() > 1)
      c.fail("", tq + " appears in two shards: " + quote_for_error(shard_names[w.second[0]]) + " and " +
                     quote_for_error(shard_names[w.second[1]]));
    auto m = want.find(w.first);
    if (m == want.end())
      c.fail("weight_map", tq + " in shard " + quote_for_error(shard_names[w.second[0]]) +
                               " is not listed in weight_map");
    if (m->second != w.second[0])
      c.fail("weight_map", tq + " is mapped to shard " + quote_for_error(shard_names[m->second]) +
                               " but found in shard " + quote_for_error(shard_names[w.second[0]]));
  }
  SafeTensorsFile out;
  for (const auto& m : want) {
    auto& shard = shards.at(m.second);
    if (shard.skipped.count(m.first)) {
      out.skipped.insert(m.first);
      continue;
    }
    auto t = shard.tensors.find(m.first);
    if (t == shard.tensors.end())
      c.fail(json_path("weight_map", quote_for_error(m.first)),
             "tensor missing from its shard " + quote_for_error(shard_names[m.second]));
    out.tensors.emplace(m.first, std::move(t->second));
  }
  for (auto& s : shards) out.metadata.insert(s.second.metadata.begin(), s.second.metadata.end());
  return out;
}

std::vector<uint8_t> encode_safetensors(const std::vector<SafeTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::vector<const SafeTensor*> order;
  for (const SafeTensor& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafeTensor* a, const SafeTensor* b) { return a->name < b->name; });
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t cursor = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const SafeTensor& t = *order[i];
    const std::string tq = "encode_safetensors: tensor " + quote_for_error(t.name);
    if (t.name.empty() || t.name == "__metadata__") throw Error(ErrorCode::InvalidArgument, tq + ": invalid name");
    if (i && order[i - 1]->name == t.name) throw Error(ErrorCode::InvalidArgument, tq + ": duplicate name");
    uint64_t numel = 1, nbytes = 0;
    for (int64_t d : t.shape)
      if (d < 0 || !mul_ok(numel, uint64_t(d), &numel)) throw Error(ErrorCode::InvalidArgument, tq + ": bad shape");
    if (!mul_ok(numel, dtype_size(t.dtype), &nbytes) || nbytes != t.bytes.size())
      throw Error(ErrorCode::InvalidArgument, tq + ": " + std::to_string(t.bytes.size()) +
                                                  " bytes do not match shape and dtype");
    h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {cursor, cursor + nbytes}}};
    cursor += nbytes;
  }
  std::string text = h.dump();
  text.append(align_up(text.size(), 8) - text.size(), ' ');  // keeps the buffer 8-byte aligned
  std::vector<uint8_t> out(8 + text.size());
  for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(text.size()) >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  out.reserve(out.size() + size_t(cursor));
  for (const SafeTensor* t : order) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
  return out;
}

}  // namespace diffrt
