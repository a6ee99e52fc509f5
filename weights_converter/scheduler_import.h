// The scheduler defaults a converted model file carries. diffrt samples with DDPM or DDIM; both
// read the diffusers scheduler_config.json fields that define the noise schedule (betas, T,
// prediction type, timestep spacing, steps offset, clipping, ...), see runtime/schedule.h.
//  * DDPMScheduler / DDIMScheduler configs (or configs without a _class_name) are validated and
//    kept unchanged.
//  * Other diffusers schedulers built on the same discrete beta schedule (PNDM -- what Stable
//    Diffusion folders name -- Euler, LMS, Heun, DPM-Solver, UniPC, DEIS, KDPM2) are reduced to the
//    fields DDIM/DDPM share with them and stored as a DDIMScheduler config (DDIM with eta = 0 is
//    the closest deterministic sampler we have), with a warning naming what was dropped. Missing
//    shared fields then take DDIMScheduler's defaults, exactly as diffusers'
//    DDIMScheduler.from_config(other.config) does.
//  * Anything else is refused naming the class.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace diffrt {

struct ImportedScheduler {
  nlohmann::json config;     // what the model file stores
  std::string source_class;  // the file's _class_name ("" when absent)
  std::vector<std::string> warnings;
};

// `origin` names the file in errors and warnings.
ImportedScheduler import_scheduler_config(const nlohmann::json& j, const std::string& origin);

}  // namespace diffrt
