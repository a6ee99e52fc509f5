// The model file's optional "pipeline" section <-> PipelineInfo (model_file.h):
//   {"class": "DiTPipeline", "cfg_order": "uncond_first"|"cond_first", "extra_channels": "scheduler"|"drop",
//    "id2label": [[id, "name, synonym, ..."], ...]}
// "extra_channels": what happens to output channels beyond in_channels: "scheduler" (the scheduler's variance type
// decides, e.g. DDPM learned_range) or "drop" (DiTPipeline drops its learned sigma). id2label keeps
// model_index.json's order, which decides duplicate names (class_label_ids). The reader treats it as hostile:
// exact key sets, typed fields, ids in [0, num_classes) (checked by the model-file reader, which knows num_classes).
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "base/strict_json.h"
#include "model/model_file.h"

namespace diffrt {

constexpr size_t kMaxClassNameBytes = 4096;

nlohmann::json pipeline_to_json(const PipelineInfo& p);
// `path` is the section's path in errors ("pipeline").
PipelineInfo pipeline_from_json(const nlohmann::json& j, const JsonCheck& c, const std::string& path);

// Python's str.strip() with no argument: removes leading and trailing characters for which str.isspace() holds
// (ASCII whitespace, U+001C..U+001F, U+0085, U+00A0 and the Unicode space separators). `s` is valid UTF-8.
std::string python_strip(const std::string& s);

}  // namespace diffrt
