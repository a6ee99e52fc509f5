#include "weights_converter/scheduler_import.h"

#include "base/error.h"
#include "model/scheduler_config.h"

namespace diffrt {

namespace {

using nlohmann::json;

// Classes whose noise schedule is the discrete beta schedule DDIM/DDPM implement.
const char* const kConvertible[] = {
    "PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler",
    "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler", "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler"};

// Fields DDIMScheduler reads that mean the same thing in the classes above.
const char* const kShared[] = {
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
    "timestep_spacing", "steps_offset", "set_alpha_to_one", "clip_sample", "clip_sample_range", "thresholding",
    "dynamic_thresholding_ratio", "sample_max_value", "rescale_betas_zero_snr"};

bool in(const char* const* list, size_t n, const std::string& s) {
  for (size_t i = 0; i < n; ++i)
    if (s == list[i]) return true;
  return false;
}

}  // namespace

ImportedScheduler import_scheduler_config(const json& j, const std::string& origin) {
  if (!j.is_object()) fail(ErrorCode::InvalidModel, origin + ": scheduler config must be a JSON object");
  ImportedScheduler r;
  if (j.contains("_class_name")) {
    if (!j["_class_name"].is_string())
      fail(ErrorCode::InvalidModel, origin + ": field '_class_name': expected a string, got " + j["_class_name"].dump());
    r.source_class = j["_class_name"].get<std::string>();
  }
  if (r.source_class.empty() || r.source_class == "DDPMScheduler" || r.source_class == "DDIMScheduler") {
    scheduler_config_from_json(j, origin);  // validate now, not at sampling time
    r.config = j;
    return r;
  }
  constexpr size_t nconv = sizeof kConvertible / sizeof kConvertible[0];
  if (!in(kConvertible, nconv, r.source_class)) {
    std::string list = "DDPMScheduler, DDIMScheduler";
    for (const char* c : kConvertible) list += std::string(", ") + c;
    fail(ErrorCode::Unsupported, origin + ": unsupported scheduler _class_name=\"" + r.source_class +
                                     "\" (supported: " + list + ")");
  }
  // Euler's "continuous" timesteps feed the UNet 0.25*log(sigma) instead of t: a different model input.
  if (j.contains("timestep_type") && j["timestep_type"] != "discrete")
    fail(ErrorCode::Unsupported, origin + ": unsupported timestep_type=" + j["timestep_type"].dump() +
                                     " (supported: \"discrete\")");

  json out = json::object();
  std::string dropped;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    constexpr size_t nshared = sizeof kShared / sizeof kShared[0];
    if (in(kShared, nshared, k)) out[k] = it.value();
    else if (k == "_diffusers_version") out[k] = it.value();
    else if (!k.empty() && k[0] != '_') dropped += (dropped.empty() ? "" : ", ") + k;
  }
  out["_class_name"] = "DDIMScheduler";
  scheduler_config_from_json(out, origin);  // the stored config must itself be valid
  r.config = std::move(out);
  r.warnings.push_back(origin + ": " + r.source_class +
                       " is not implemented; the model file keeps its noise schedule and defaults to the DDIM "
                       "sampler (eta = 0; DDPM is also available)" +
                       (dropped.empty() ? std::string() : "; sampler-specific fields not used: " + dropped));
  return r;
}

}  // namespace diffrt
