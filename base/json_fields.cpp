#include "base/json_fields.h"

#include <cmath>

#include "base/error.h"
#include "base/strict_json.h"

namespace diffrt {

using nlohmann::json;

JsonFields::JsonFields(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {
  if (!j_.is_object()) diffrt::fail(ErrorCode::InvalidModel, origin_ + ": expected a JSON object");
}

void JsonFields::fail(const std::string& key, const std::string& what) const {
  diffrt::fail(ErrorCode::InvalidModel, origin_ + ": field '" + key + "': " + what);
}

bool JsonFields::has(const std::string& key) const { return j_.contains(key); }
bool JsonFields::is_null(const std::string& key) const { return has(key) && j_.at(key).is_null(); }

static bool is_int(const json& v) { return v.is_number_integer(); }  // false for floats and bools

long long JsonFields::get_int(const std::string& key, long long def, long long lo, long long hi) const {
  auto v = get_opt_int(key, lo, hi);
  return v ? *v : def;
}

std::optional<long long> JsonFields::get_opt_int(const std::string& key, long long lo, long long hi) const {
  if (!has(key) || j_.at(key).is_null()) return std::nullopt;
  const json& v = j_.at(key);
  long long x = 0;
  if (is_int(v)) {
    if (v.is_number_unsigned() && v.get<unsigned long long>() > (unsigned long long)hi)
      fail(key, "value " + v.dump() + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    x = v.get<long long>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
             v.get<double>() == std::floor(v.get<double>()) && std::fabs(v.get<double>()) < 1e15) {
    x = (long long)v.get<double>();  // 2.0 written by Python json for ints is accepted
  } else {
    fail(key, "expected an integer, got " + v.dump());
  }
  if (x < lo || x > hi)
    fail(key, "value " + std::to_string(x) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double JsonFields::get_number(const std::string& key, double def, double lo, double hi) const {
  if (!has(key) || j_.at(key).is_null()) return def;
  const json& v = j_.at(key);
  if (!v.is_number()) fail(key, "expected a number, got " + v.dump());
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    fail(key, "value " + v.dump() + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

bool JsonFields::get_bool(const std::string& key, bool def) const {
  if (!has(key) || j_.at(key).is_null()) return def;
  const json& v = j_.at(key);
  if (!v.is_boolean()) fail(key, "expected true or false, got " + v.dump());
  return v.get<bool>();
}

std::string JsonFields::get_string(const std::string& key, const std::string& def) const {
  if (!has(key) || j_.at(key).is_null()) return def;
  const json& v = j_.at(key);
  if (!v.is_string()) fail(key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

std::string JsonFields::get_enum(const std::string& key, const std::string& def,
                                 const std::vector<std::string>& allowed) const {
  std::string s = get_string(key, def);
  for (const auto& a : allowed)
    if (s == a) return s;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  diffrt::fail(ErrorCode::Unsupported,
               origin_ + ": unsupported " + key + "=\"" + s + "\" (supported: " + list + ")");
}

std::vector<long long> JsonFields::get_int_list(const std::string& key, long long lo, long long hi,
                                                size_t max_len) const {
  if (!has(key) || !j_.at(key).is_array()) fail(key, "expected a list of integers");
  const json& a = j_.at(key);
  if (a.empty() || a.size() > max_len) fail(key, "expected 1.." + std::to_string(max_len) + " entries");
  std::vector<long long> out;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string item = key + "[" + std::to_string(i) + "]";
    json wrap = json::object({{item, a[i]}});
    auto v = JsonFields(wrap, origin_).get_opt_int(item, lo, hi);
    if (!v) fail(item, "expected an integer, got null");
    out.push_back(*v);
  }
  return out;
}

std::vector<std::string> JsonFields::get_string_list(const std::string& key, size_t max_len) const {
  if (!has(key) || !j_.at(key).is_array()) fail(key, "expected a list of strings");
  const json& a = j_.at(key);
  if (a.empty() || a.size() > max_len) fail(key, "expected 1.." + std::to_string(max_len) + " entries");
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string()) fail(key + "[" + std::to_string(i) + "]", "expected a string, got " + a[i].dump());
    out.push_back(a[i].get<std::string>());
  }
  return out;
}

std::vector<double> JsonFields::get_number_list(const std::string& key, size_t max_len) const {
  if (!has(key) || !j_.at(key).is_array()) fail(key, "expected a list of numbers");
  const json& a = j_.at(key);
  if (a.size() > max_len) fail(key, "more than " + std::to_string(max_len) + " entries");
  std::vector<double> out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_number() || !std::isfinite(a[i].get<double>()))
      fail(key + "[" + std::to_string(i) + "]", "expected a finite number, got " + a[i].dump());
    out.push_back(a[i].get<double>());
  }
  return out;
}

json parse_json_strict(const std::string& text, const std::string& origin) {
  return JsonCheck(origin).parse_strict(text, "");
}

int JsonFields::get_sample_size(const std::string& key) const {
  if (!has(key) || is_null(key)) return 0;
  if (j_[key].is_array()) {
    auto s = get_int_list(key, 1, 1 << 16, 2);
    if (s.size() != 2 || s[0] != s[1]) fail(key, "only square sample sizes are supported");
    return int(s[0]);
  }
  return int(get_int(key, 0, 1, 1 << 16));
}

}  // namespace diffrt
