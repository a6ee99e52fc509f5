// Scheduler import for the converter (contract in scheduler_import.h).
// Tested by tests/converter_test.cpp and tests/sd_converter_test.cpp (SD 1.5 keeps PNDMScheduler).
#include "weights_converter/scheduler_import.h"

#include "base/error.h"
#include "model/scheduler_config.h"

namespace diffrt {

namespace {

using nlohmann::json;

// Schedulers on the discrete beta schedule that diffrt does not implement: stored as DDIM.from_config(file).
const char* const kReducible[] = {"LMSDiscreteScheduler",         "DPMSolverSinglestepScheduler",
                                  "DEISMultistepScheduler",       "KDPM2DiscreteScheduler",
                                  "KDPM2AncestralDiscreteScheduler", "DPMSolverSDEScheduler"};

}  // namespace

ImportedScheduler import_scheduler_config(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": scheduler config must be a JSON object");
  ImportedScheduler r;
  if (j.contains("_class_name")) {
    if (!j["_class_name"].is_string())
      fail(ErrorCode::InvalidModel, origin + ": field '_class_name': expected a string, got " + j["_class_name"].dump());
    r.source_class = j["_class_name"].get<std::string>();
  }
  bool reducible = false;
  for (const char* c : kReducible) reducible = reducible || r.source_class == c;
  if (!reducible) {
    // One of the nine classes (or no class): validated now, not at sampling time, and kept as written.
    const SchedulerConfig c = scheduler_config_from_json(j, origin);
    r.config = j;
    r.description = describe_scheduler(c);
    return r;
  }
  json out = j;
  out["_class_name"] = "DDIMScheduler";
  const SchedulerConfig c = scheduler_config_from_json(out, origin);  // the stored config must itself be valid
  r.config = std::move(out);
  r.description = describe_scheduler(c);
  r.warnings.push_back(origin + ": " + r.source_class +
                       " is not implemented; the model file keeps its noise schedule as DDIMScheduler.from_config(" +
                       "its config) (sampler ddim, eta 0; choose another with --sampler: " + supported_sampler_names() +
                       ")");
  return r;
}

}  // namespace diffrt
