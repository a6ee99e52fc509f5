// Scheduler class names, user-facing sampler names, `--sampler NAME [--karras]` selection and the one-line
// description `diffrt info` prints (contract in scheduler_config.h).
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "model/scheduler_config.h"

namespace diffrt {
namespace {

using json = nlohmann::json;
using K = SchedulerClass;

struct NameRow {
  const char* name;
  K klass;
  const char* overrides;
};
// Short names first (the order of the help text), then the diffusers class names.
const NameRow kNames[] = {
    {"ddpm", K::Ddpm, "{}"},
    {"ddim", K::Ddim, "{}"},
    {"pndm", K::Pndm, "{}"},
    {"dpmpp-2m", K::DpmSolverMultistep, R"({"algorithm_type":"dpmsolver++","solver_order":2})"},
    {"dpmpp-2m-sde", K::DpmSolverMultistep, R"({"algorithm_type":"sde-dpmsolver++","solver_order":2})"},
    {"euler", K::EulerDiscrete, "{}"},
    {"euler-a", K::EulerAncestral, "{}"},
    {"heun", K::Heun, "{}"},
    {"unipc", K::UniPC, "{}"},
    {"lcm", K::Lcm, "{}"},
};

}  // namespace

const char* scheduler_class_name(SchedulerClass k) {
  switch (k) {
    case K::Ddpm: return "DDPMScheduler";
    case K::Ddim: return "DDIMScheduler";
    case K::Pndm: return "PNDMScheduler";
    case K::DpmSolverMultistep: return "DPMSolverMultistepScheduler";
    case K::EulerDiscrete: return "EulerDiscreteScheduler";
    case K::EulerAncestral: return "EulerAncestralDiscreteScheduler";
    case K::Heun: return "HeunDiscreteScheduler";
    case K::UniPC: return "UniPCMultistepScheduler";
    case K::Lcm: return "LCMScheduler";
  }
  return "?";
}

const char* scheduler_short_name(SchedulerClass k) {
  switch (k) {
    case K::Ddpm: return "ddpm";
    case K::Ddim: return "ddim";
    case K::Pndm: return "pndm";
    case K::DpmSolverMultistep: return "dpmpp-2m";
    case K::EulerDiscrete: return "euler";
    case K::EulerAncestral: return "euler-a";
    case K::Heun: return "heun";
    case K::UniPC: return "unipc";
    case K::Lcm: return "lcm";
  }
  return "?";
}

const char* to_string(SamplerKind v) { return scheduler_short_name(v); }

std::string supported_sampler_names() {
  std::string s;
  for (const NameRow& r : kNames) s += std::string(s.empty() ? "" : ", ") + r.name;
  for (int i = 0; i < kNumSchedulerClasses; ++i) s += std::string(", ") + scheduler_class_name(K(i));
  return s;
}

SamplerName parse_sampler_name(const std::string& name) {
  for (const NameRow& r : kNames)
    if (name == r.name) return SamplerName{r.klass, r.overrides};
  for (int i = 0; i < kNumSchedulerClasses; ++i)
    if (name == scheduler_class_name(K(i))) return SamplerName{K(i), "{}"};
  std::string shown = name.size() > 60 ? name.substr(0, 57) + "..." : name;
  fail(ErrorCode::InvalidArgument, "unknown sampler \"" + shown + "\"; supported: " + supported_sampler_names());
}

SchedulerConfig select_sampler(const SchedulerConfig& model_cfg, const std::string& name, bool karras,
                               const std::string& origin) {
  const SamplerName s = parse_sampler_name(name);
  json overrides = json::parse(s.overrides_json);
  if (karras) {
    if (!scheduler_class_takes(s.klass, "use_karras_sigmas"))
      fail(ErrorCode::InvalidArgument, std::string("--karras: ") + scheduler_class_name(s.klass) + " (" + name +
                                           ") has no Karras sigmas; they apply to dpmpp-2m, dpmpp-2m-sde, euler, heun "
                                           "and unipc");
    overrides["use_karras_sigmas"] = true;
  }
  return resolve_scheduler_config(model_cfg, s.klass, overrides, origin);
}

int default_steps(SchedulerClass k) {
  if (k == K::Ddpm) return 1000;
  if (k == K::Lcm) return 4;
  return 50;
}

std::string sampler_display_name(const SchedulerConfig& c) {
  const K k = c.klass;
  std::string shown = scheduler_short_name(k);
  if (k == K::DpmSolverMultistep) {
    const bool sde = c.algorithm_type == DpmAlgorithm::SdeDpmSolverPP || c.algorithm_type == DpmAlgorithm::SdeDpmSolver;
    const bool pp = c.algorithm_type == DpmAlgorithm::DpmSolverPP || c.algorithm_type == DpmAlgorithm::SdeDpmSolverPP;
    shown = std::string(pp ? "dpmpp-" : "dpm-") + std::to_string(c.solver_order) + "m" + (sde ? "-sde" : "");
  }
  return shown;
}

std::string describe_scheduler(const SchedulerConfig& c) {
  std::ostringstream o;
  const K k = c.klass;
  const std::string shown = sampler_display_name(c);
  o << scheduler_class_name(k) << " (" << shown << (c.use_karras_sigmas && scheduler_class_takes(k, "use_karras_sigmas") ? ", karras" : "")
    << "): ";
  auto yes = [](bool b) { return b ? "true" : "false"; };
  switch (k) {
    case K::Pndm: o << "skip_prk_steps=" << yes(c.skip_prk_steps) << ", set_alpha_to_one=" << yes(c.set_alpha_to_one) << ", "; break;
    case K::Ddim: o << "set_alpha_to_one=" << yes(c.set_alpha_to_one) << ", clip_sample=" << yes(c.clip_sample) << ", "; break;
    case K::Ddpm:
      o << "variance_type=" << (c.variance_type_null ? "fixed_small" : to_string(c.variance_type))
        << ", clip_sample=" << yes(c.clip_sample) << ", ";
      break;
    case K::DpmSolverMultistep:
      o << "algorithm_type=" << to_string(c.algorithm_type) << ", solver_order=" << c.solver_order
        << ", solver_type=" << to_string(c.solver_type) << ", final_sigmas_type=" << to_string(c.final_sigmas_type)
        << ", lower_order_final=" << yes(c.lower_order_final) << ", ";
      break;
    case K::EulerDiscrete:
      o << "interpolation_type=" << to_string(c.interpolation_type) << ", timestep_type=" << to_string(c.timestep_type) << ", ";
      if (c.has_sigma_min) o << "sigma_min=" << c.sigma_min << ", ";
      if (c.has_sigma_max) o << "sigma_max=" << c.sigma_max << ", ";
      break;
    case K::Heun: o << "clip_sample=" << yes(c.clip_sample) << ", "; break;
    case K::UniPC:
      o << "solver_order=" << c.solver_order << ", solver_type=" << to_string(c.solver_type)
        << ", predict_x0=" << yes(c.predict_x0) << ", lower_order_final=" << yes(c.lower_order_final) << ", ";
      break;
    case K::Lcm:
      o << "original_inference_steps=" << c.original_inference_steps << ", timestep_scaling=" << c.timestep_scaling
        << ", set_alpha_to_one=" << yes(c.set_alpha_to_one) << ", ";
      break;
    case K::EulerAncestral: break;
  }
  if (c.thresholding && scheduler_class_takes(k, "thresholding")) o << "thresholding=true, ";
  o << "prediction_type=" << to_string(c.prediction_type);
  if (k != K::Lcm) o << ", timestep_spacing=" << to_string(c.timestep_spacing) << ", steps_offset=" << c.steps_offset;
  if (c.has_trained_betas) o << ", betas=trained";
  else o << ", betas=" << to_string(c.beta_schedule) << " " << c.beta_start << ".." << c.beta_end;
  if (c.rescale_betas_zero_snr && scheduler_class_takes(k, "rescale_betas_zero_snr")) o << " (zero-SNR)";
  o << ", T=" << c.num_train_timesteps;
  return o.str();
}

}  // namespace diffrt
