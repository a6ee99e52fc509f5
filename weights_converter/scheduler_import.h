// The scheduler a converted model file carries: the model's own scheduler_config.json, kept as diffusers would
// load it (model/scheduler_config.h: the class named by _class_name, with from_config semantics, so that
// `--sampler NAME` later builds NAME.from_config(this config) exactly as diffusers users do).
//  * The nine classes diffrt implements (DDPM, DDIM, PNDM -- what Stable Diffusion 1.x folders name --,
//    DPMSolverMultistep, EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete, UniPCMultistep, LCM) and configs
//    without a _class_name are validated by the strict parser and stored unchanged.
//  * Other diffusers schedulers built on the same discrete beta schedule (LMS, DPMSolverSinglestep, DEIS, KDPM2,
//    KDPM2Ancestral, DPMSolverSDE) are stored as DDIMScheduler.from_config(file) (the same keys under
//    _class_name DDIMScheduler; keys DDIM does not take stay as hidden keys), with a warning naming the class.
//  * Anything else is refused naming the class and the supported ones.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace diffrt {

struct ImportedScheduler {
  nlohmann::json config;     // what the model file stores
  std::string source_class;  // the file's _class_name ("" when absent)
  std::string description;   // describe_scheduler() of the stored config, for the conversion report
  std::vector<std::string> warnings;
};

// `origin` names the file in errors and warnings.
ImportedScheduler import_scheduler_config(const nlohmann::json& j, const std::string& origin);

}  // namespace diffrt
