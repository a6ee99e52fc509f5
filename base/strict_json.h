// Strict JSON for untrusted headers (model files, safetensors, shard indexes):
//  - parse_strict rejects malformed JSON and UTF-8 (nlohmann validates strings), comments,
//    duplicate object keys (nlohmann would silently keep the last one) and nesting deeper than
//    kMaxJsonDepth;
//  - JsonCheck's accessors check the JSON type and range BEFORE converting: nlohmann's get<>
//    turns -1 or 3.7 into a size_t silently.
// Every error is Error(code, "<origin>: <path>: <what>"), path like "graph.nodes[3].attrs.cin".
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/error.h"

namespace diffrt {

constexpr int kMaxJsonDepth = 64;

// Quotes an untrusted string for an error message: escapes control bytes, cuts it at 80 bytes.
std::string quote_for_error(std::string_view s);
// "parent.key" / "parent[i]" (just "key" when parent is empty).
std::string json_path(const std::string& parent, std::string_view key);
std::string json_index(const std::string& parent, size_t i);

class JsonCheck {
 public:
  explicit JsonCheck(std::string origin, ErrorCode code = ErrorCode::InvalidModel)
      : origin_(std::move(origin)), code_(code) {}

  // Parses `text`; `path` names what is being parsed in errors ("header", "index").
  nlohmann::json parse_strict(std::string_view text, const std::string& path) const;

  [[noreturn]] void fail(const std::string& path, const std::string& what) const;
  [[noreturn]] void fail_code(ErrorCode code, const std::string& path, const std::string& what) const;
  const std::string& origin() const { return origin_; }

  const nlohmann::json& object(const nlohmann::json& v, const std::string& path) const;
  const nlohmann::json& array(const nlohmann::json& v, const std::string& path) const;
  // Member `key` of object `o` (which is at `path`); throws when absent.
  const nlohmann::json& member(const nlohmann::json& o, const std::string& path, std::string_view key) const;
  // Throws naming the first member of `o` that is not in `allowed`.
  void only_keys(const nlohmann::json& o, const std::string& path,
                 std::initializer_list<std::string_view> allowed) const;

  uint64_t u64(const nlohmann::json& v, const std::string& path) const;
  int64_t int_in(const nlohmann::json& v, const std::string& path, int64_t lo, int64_t hi) const;
  double finite(const nlohmann::json& v, const std::string& path) const;
  float f32(const nlohmann::json& v, const std::string& path) const;  // finite, fits a float
  bool boolean(const nlohmann::json& v, const std::string& path) const;
  std::string string(const nlohmann::json& v, const std::string& path) const;

  // The same, reading member `key` of object `o` at `path`.
  uint64_t u64_at(const nlohmann::json& o, const std::string& path, std::string_view key) const;
  int64_t int_at(const nlohmann::json& o, const std::string& path, std::string_view key, int64_t lo,
                 int64_t hi) const;
  float f32_at(const nlohmann::json& o, const std::string& path, std::string_view key) const;
  bool bool_at(const nlohmann::json& o, const std::string& path, std::string_view key) const;
  std::string string_at(const nlohmann::json& o, const std::string& path, std::string_view key) const;

 private:
  std::string origin_;
  ErrorCode code_;
};

}  // namespace diffrt
