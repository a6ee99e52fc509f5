// The model file's pipeline section (layout in pipeline_json.h) and DiTPipeline's class-name lookup.
// Tested by tests/dit_format_test.cpp.
#include "model/pipeline_json.h"

#include <algorithm>

#include "base/error.h"
#include "base/utf8.h"

namespace diffrt {

using nlohmann::json;

namespace {

// Python 3's str.isspace() code points (unicodedata bidirectional WS/B/S or category Zs).
bool py_space(uint32_t cp) {
  if (cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F) || cp == 0x85 || cp == 0xA0) return true;
  return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

}  // namespace

std::string python_strip(const std::string& s) {
  size_t begin = 0, end = 0;  // [begin, end): the kept bytes
  bool started = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = std::min(utf8_char_len(static_cast<unsigned char>(s[i])), s.size() - i);
    if (!py_space(utf8_decode(s.data() + i, n))) {
      if (!started) begin = i;
      started = true;
      end = i + n;
    }
    i += n;
  }
  return started ? s.substr(begin, end - begin) : std::string();
}

std::map<std::string, int> class_label_ids(const PipelineInfo& p) {
  std::map<std::string, int> out;
  for (const auto& [id, text] : p.id2label) {
    size_t start = 0;
    while (true) {  // value.split(","): every piece, empty ones included
      const size_t comma = text.find(',', start);
      out[python_strip(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start))] = id;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

int class_label_id(const PipelineInfo& p, const std::string& name) {
  const std::map<std::string, int> ids = class_label_ids(p);
  auto it = ids.find(python_strip(name));
  return it == ids.end() ? -1 : it->second;
}

json pipeline_to_json(const PipelineInfo& p) {
  json labels = json::array();
  for (const auto& [id, text] : p.id2label) labels.push_back(json::array({id, text}));
  return {{"class", p.class_name},
          {"cfg_order", p.cfg_order == CfgOrder::CondFirst ? "cond_first" : "uncond_first"},
          {"extra_channels", p.drop_extra_channels ? "drop" : "scheduler"},
          {"id2label", labels}};
}

PipelineInfo pipeline_from_json(const json& j, const JsonCheck& c, const std::string& p) {
  c.object(j, p);
  c.only_keys(j, p, {"class", "cfg_order", "extra_channels", "id2label"});
  PipelineInfo out;
  out.class_name = c.string_at(j, p, "class");
  if (out.class_name.empty() || out.class_name.size() > 256) c.fail(json_path(p, "class"), "must be 1..256 bytes");
  const std::string order = c.string_at(j, p, "cfg_order");
  if (order == "cond_first") out.cfg_order = CfgOrder::CondFirst;
  else if (order != "uncond_first")
    c.fail(json_path(p, "cfg_order"), "unknown value " + quote_for_error(order) + " (uncond_first, cond_first)");
  const std::string extra = c.string_at(j, p, "extra_channels");
  if (extra == "drop") out.drop_extra_channels = true;
  else if (extra != "scheduler")
    c.fail(json_path(p, "extra_channels"), "unknown value " + quote_for_error(extra) + " (scheduler, drop)");
  const std::string lp = json_path(p, "id2label");
  const json& labels = c.array(c.member(j, p, "id2label"), lp);
  if (labels.size() > size_t(1) << 20) c.fail(lp, "more than 2^20 entries");
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string ep = json_index(lp, i);
    const json& e = c.array(labels[i], ep);
    if (e.size() != 2) c.fail(ep, "expected [class id, name]");
    const int id = int(c.int_in(e[0], json_index(ep, 0), 0, (1 << 20) - 1));
    std::string name = c.string(e[1], json_index(ep, 1));
    if (name.size() > kMaxClassNameBytes)
      c.fail(json_index(ep, 1), "longer than " + std::to_string(kMaxClassNameBytes) + " bytes");
    out.id2label.emplace_back(id, std::move(name));
  }
  return out;
}

}  // namespace diffrt
