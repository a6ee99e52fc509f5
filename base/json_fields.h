// Strict typed access to untrusted JSON objects. nlohmann converts -1 or 3.7 to size_t silently
// and keeps the last of duplicate keys, so every field is type-checked here before it is read;
// errors name the origin (file) and the field.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace diffrt {

class JsonFields {
 public:
  // `j` must be an object; `origin` is used in every error, e.g. "unet/config.json".
  JsonFields(const nlohmann::json& j, std::string origin);

  bool has(const std::string& key) const;      // present (possibly null)
  bool is_null(const std::string& key) const;  // present and null
  // Missing key -> `def`; present: must be an integer in [lo, hi] (no floats, no bools).
  long long get_int(const std::string& key, long long def, long long lo, long long hi) const;
  std::optional<long long> get_opt_int(const std::string& key, long long lo, long long hi) const;
  double get_number(const std::string& key, double def, double lo, double hi) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  // String restricted to `allowed`; the error lists them.
  std::string get_enum(const std::string& key, const std::string& def,
                       const std::vector<std::string>& allowed) const;
  std::vector<long long> get_int_list(const std::string& key, long long lo, long long hi,
                                      size_t max_len) const;  // required
  std::vector<std::string> get_string_list(const std::string& key, size_t max_len) const;
  std::vector<double> get_number_list(const std::string& key, size_t max_len) const;
  // diffusers' sample_size: an int or a square [s, s] pair; 0 when missing or null.
  int get_sample_size(const std::string& key) const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  const std::string& origin() const { return origin_; }

 private:
  const nlohmann::json& j_;
  std::string origin_;
};

// Parses untrusted JSON text (strict_json.h rules: no duplicate keys, bounded depth). Errors name `origin`.
nlohmann::json parse_json_strict(const std::string& text, const std::string& origin);

}  // namespace diffrt
