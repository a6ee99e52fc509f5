// Strict JSON parsing (duplicate keys, depth) and type-checked accessors; see strict_json.h.
#include "base/strict_json.h"

#include <cmath>
#include <limits>
#include <set>
#include <vector>

namespace diffrt {

using nlohmann::json;

std::string quote_for_error(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > 80) { out += "..."; break; }
    if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
    else if (c < 0x20 || c == 0x7f) { out += "\\x"; out += hex[c >> 4]; out += hex[c & 15]; }
    else out += char(c);
  }
  return out + "\"";
}

std::string json_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}
std::string json_index(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

namespace {
// One open container while parsing: objects remember their keys, arrays their element count.
struct Frame {
  bool is_object = false;
  std::string label;           // path component of this container
  std::set<std::string> keys;  // objects: keys seen so far
  std::string last_key;        // objects: label for the next member
  size_t next_index = 0;       // arrays: index of the next element
};

std::string frames_path(const std::vector<Frame>& st, const std::string& root) {
  std::string p = root;
  for (size_t i = 1; i < st.size(); ++i) {
    const std::string& l = st[i].label;
    p += (l.size() && l[0] == '[') ? l : "." + l;
  }
  return p;
}
}  // namespace

json JsonCheck::parse_strict(std::string_view text, const std::string& path) const {
  std::vector<Frame> st;
  auto child_label = [&st]() -> std::string {
    if (st.empty()) return "";
    Frame& top = st.back();
    if (top.is_object) return top.last_key;
    return "[" + std::to_string(top.next_index++) + "]";
  };
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    using E = json::parse_event_t;
    switch (ev) {
      case E::object_start:
      case E::array_start: {
        if (depth >= kMaxJsonDepth)
          fail(path, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        Frame f;
        f.is_object = ev == E::object_start;
        f.label = child_label();
        st.push_back(std::move(f));
        break;
      }
      case E::object_end:
      case E::array_end:
        if (!st.empty()) st.pop_back();
        break;
      case E::key: {
        Frame& top = st.back();
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!top.keys.insert(k).second)
          fail(frames_path(st, path), "duplicate key " + quote_for_error(k));
        top.last_key = k;
        break;
      }
      case E::value:
        if (!st.empty() && !st.back().is_object) ++st.back().next_index;
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(path, std::string("not valid UTF-8 JSON: ") + e.what());
  }
}

void JsonCheck::fail(const std::string& path, const std::string& what) const {
  fail_code(code_, path, what);
}
void JsonCheck::fail_code(ErrorCode code, const std::string& path, const std::string& what) const {
  throw Error(code, origin_ + ": " + (path.empty() ? "" : path + ": ") + what);
}

const json& JsonCheck::object(const json& v, const std::string& path) const {
  if (!v.is_object()) fail(path, std::string("expected a JSON object, got ") + v.type_name());
  return v;
}
const json& JsonCheck::array(const json& v, const std::string& path) const {
  if (!v.is_array()) fail(path, std::string("expected a JSON array, got ") + v.type_name());
  return v;
}
const json& JsonCheck::member(const json& o, const std::string& path, std::string_view key) const {
  object(o, path);
  auto it = o.find(std::string(key));
  if (it == o.end()) fail(json_path(path, key), "missing required field");
  return *it;
}
void JsonCheck::only_keys(const json& o, const std::string& path,
                          std::initializer_list<std::string_view> allowed) const {
  object(o, path);
  for (auto it = o.begin(); it != o.end(); ++it) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || it.key() == a;
    if (!ok) fail(path, "unexpected field " + quote_for_error(it.key()));
  }
}

uint64_t JsonCheck::u64(const json& v, const std::string& path) const {
  if (!v.is_number_unsigned())
    fail(path, std::string("expected a non-negative integer, got ") +
                   (v.is_number() ? v.dump() : v.type_name()));
  return v.get<uint64_t>();
}
int64_t JsonCheck::int_in(const json& v, const std::string& path, int64_t lo, int64_t hi) const {
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(path, "integer " + v.dump() + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    x = int64_t(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else {
    fail(path, std::string("expected an integer, got ") + (v.is_number() ? v.dump() : v.type_name()));
  }
  if (x < lo || x > hi)
    fail(path, "value " + std::to_string(x) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}
double JsonCheck::finite(const json& v, const std::string& path) const {
  if (!v.is_number()) fail(path, std::string("expected a number, got ") + v.type_name());
  double d = v.get<double>();
  if (!std::isfinite(d)) fail(path, "number is not finite");
  return d;
}
float JsonCheck::f32(const json& v, const std::string& path) const {
  double d = finite(v, path);
  if (std::fabs(d) > double(std::numeric_limits<float>::max()))
    fail(path, "number " + v.dump() + " does not fit a float");
  return float(d);
}
bool JsonCheck::boolean(const json& v, const std::string& path) const {
  if (!v.is_boolean()) fail(path, std::string("expected true/false, got ") + v.type_name());
  return v.get<bool>();
}
std::string JsonCheck::string(const json& v, const std::string& path) const {
  if (!v.is_string()) fail(path, std::string("expected a string, got ") + v.type_name());
  return v.get<std::string>();
}

uint64_t JsonCheck::u64_at(const json& o, const std::string& path, std::string_view key) const {
  return u64(member(o, path, key), json_path(path, key));
}
int64_t JsonCheck::int_at(const json& o, const std::string& path, std::string_view key, int64_t lo,
                          int64_t hi) const {
  return int_in(member(o, path, key), json_path(path, key), lo, hi);
}
float JsonCheck::f32_at(const json& o, const std::string& path, std::string_view key) const {
  return f32(member(o, path, key), json_path(path, key));
}
bool JsonCheck::bool_at(const json& o, const std::string& path, std::string_view key) const {
  return boolean(member(o, path, key), json_path(path, key));
}
std::string JsonCheck::string_at(const json& o, const std::string& path, std::string_view key) const {
  return string(member(o, path, key), json_path(path, key));
}

}  // namespace diffrt
