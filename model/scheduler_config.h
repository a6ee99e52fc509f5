// A diffusers scheduler config (scheduler_config.json) as diffusers 0.27.2 reads it: pure data, stored in the
// model file and read back from it. What the runtime computes from it (betas, timesteps, sigmas, the per-call
// step programs) is runtime/schedule.h and runtime/sampler_plan.h.
//
// Classes: the nine SchedulerClass values (diffusers class names and diffrt short names in
// scheduler_class_name / scheduler_short_name). A config holds every __init__ key of every class (the union),
// with the class's own defaults, plus:
//   * explicit_keys: the keys of ITS class that the source spelled out (diffusers' _use_default_values is the
//     complement). Only these are inherited when another class is built from this config.
//   * hidden: keys of the source that its class does not take (e.g. clip_sample in the SD 1.5 PNDM file,
//     sigma_min/sigma_max of an Euler config), as JSON text. diffusers keeps them in the config, passes them on
//     through from_config, and DPM/UniPC/Heun's Karras code reads sigma_min/sigma_max from them.
//
// from_config (diffusers 0.27.2 ConfigMixin.extract_init_dict), which resolve_scheduler_config implements:
//   X.from_config(cfg, **overrides): drop the keys listed in cfg["_use_default_values"]; X's init args come
//   from overrides, else from cfg's remaining keys; every other X arg takes X's default; the new config also
//   keeps the remaining cfg keys X does not take ("hidden"). Keys X does not know are ignored (not validated).
// Loading a file is X.from_config(file) with X = the file's _class_name.
//
// Strictness: every key the target class takes is type-checked (no strings for numbers, no floats for
// integers, no ints for bools) and range-checked; unknown enum values fail with the list of valid ones;
// errors are Error(InvalidModel) naming the origin, the key and the value (Unsupported for values diffusers
// accepts that diffrt does not run). Constructor rewrites of 0.27.2 are applied (DPM: algorithm_type "deis" ->
// dpmsolver++, solver_type logrho/bh1/bh2 -> midpoint; UniPC: solver_type midpoint/heun/logrho -> bh2).
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kernels/scheduler_step/scheduler_step.h"

namespace diffrt {

using SchedulerClass = SamplerKind;
constexpr int kNumSchedulerClasses = 9;

enum class BetaSchedule : uint8_t { Linear, ScaledLinear, SquaredCosCapV2, Sigmoid, Exp };
enum class TimestepSpacing : uint8_t { Leading, Linspace, Trailing };
enum class DpmAlgorithm : uint8_t { DpmSolverPP, SdeDpmSolverPP, DpmSolver, SdeDpmSolver };
enum class SolverType : uint8_t { Midpoint, Heun, Bh1, Bh2 };
enum class FinalSigmas : uint8_t { Zero, SigmaMin };
enum class Interpolation : uint8_t { Linear, LogLinear };
enum class TimestepType : uint8_t { Discrete, Continuous };

// The union of the __init__ arguments of the nine classes. Defaults here are DDPM's; a parsed or resolved
// config carries its own class's defaults (scheduler_class_defaults).
struct SchedulerConfig {
  SchedulerClass klass = SchedulerClass::Ddpm;
  std::string class_name;  // "_class_name" as the source spelled it ("" when absent)
  // every class
  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  bool has_trained_betas = false;
  std::vector<double> trained_betas;  // [num_train_timesteps] when has_trained_betas
  PredictionType prediction_type = PredictionType::Epsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::Leading;
  int steps_offset = 0;
  bool rescale_betas_zero_snr = false;  // DDPM, DDIM, DPM, Euler, EulerA, LCM
  // clipping / thresholding (DDPM, DDIM, Heun, LCM clip; DDPM, DDIM, DPM, UniPC, LCM threshold)
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  bool set_alpha_to_one = true;  // DDIM, PNDM, LCM
  // DDPM: the posterior variance; DPM: only learned / learned_range matter (null = none)
  VarianceType variance_type = VarianceType::FixedSmall;
  bool variance_type_null = false;
  // PNDM
  bool skip_prk_steps = false;
  // DPM-Solver multistep and UniPC
  int solver_order = 2;
  DpmAlgorithm algorithm_type = DpmAlgorithm::DpmSolverPP;
  SolverType solver_type = SolverType::Midpoint;  // DPM: midpoint/heun; UniPC: bh1/bh2
  bool lower_order_final = true;
  bool euler_at_final = false;
  bool use_karras_sigmas = false;  // DPM, Euler, Heun, UniPC
  bool use_lu_lambdas = false;
  FinalSigmas final_sigmas_type = FinalSigmas::Zero;
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  // Euler
  Interpolation interpolation_type = Interpolation::Linear;
  bool has_sigma_min = false, has_sigma_max = false;  // null when false
  double sigma_min = 0.0, sigma_max = 0.0;
  TimestepType timestep_type = TimestepType::Discrete;
  // UniPC
  bool predict_x0 = true;
  std::vector<int> disable_corrector;
  // LCM
  int original_inference_steps = 50;
  double timestep_scaling = 10.0;

  std::vector<std::string> explicit_keys;     // sorted; keys of klass given by the source
  std::map<std::string, std::string> hidden;  // keys klass does not take: name -> JSON text
};

// diffusers class name ("DPMSolverMultistepScheduler") and diffrt short name ("dpmpp-2m").
const char* scheduler_class_name(SchedulerClass k);
const char* scheduler_short_name(SchedulerClass k);
// The __init__ keys of a class, in diffusers' signature order.
const std::vector<std::string>& scheduler_class_keys(SchedulerClass k);
bool scheduler_class_takes(SchedulerClass k, const std::string& key);
// A class with every key at its default and no explicit keys.
SchedulerConfig scheduler_class_defaults(SchedulerClass k);
// Whether `key` was given explicitly (see explicit_keys).
bool scheduler_key_explicit(const SchedulerConfig& c, const std::string& key);

// A sampler named by a user: a diffusers class name or a short name, plus the overrides the short name
// implies ("dpmpp-2m" = DPMSolverMultistepScheduler with algorithm_type dpmsolver++ and solver_order 2,
// "dpmpp-2m-sde" = the same with sde-dpmsolver++). Unknown names throw Error(InvalidArgument) listing every
// supported name. `overrides` is a JSON object (possibly empty).
struct SamplerName {
  SchedulerClass klass = SchedulerClass::Ddpm;
  std::string overrides_json = "{}";
};
SamplerName parse_sampler_name(const std::string& name);
// "ddpm ddim pndm dpmpp-2m dpmpp-2m-sde euler euler-a heun unipc lcm" plus the class names, for help texts.
std::string supported_sampler_names();

// Parses a scheduler config object as diffusers' <_class_name>.from_config(j) does. A missing _class_name
// reads as DDPMScheduler (the key set DDPM/DDIM share, with their common defaults). Unknown classes throw
// Error(Unsupported) listing the supported class names.
SchedulerConfig scheduler_config_from_json(const nlohmann::json& j, const std::string& origin);
// Text of a scheduler_config.json as Python's json module writes it: NaN, Infinity and -Infinity tokens
// (diffusers saves lambda_min_clipped = -inf as -Infinity) are accepted, then the strict JSON rules apply.
nlohmann::json parse_scheduler_config_text(const std::string& text, const std::string& origin);
// Target.from_config(src, **overrides) (see the header comment). `overrides` must be a JSON object; keys the
// target does not take are ignored, as diffusers ignores unused kwargs.
SchedulerConfig resolve_scheduler_config(const SchedulerConfig& src, SchedulerClass target,
                                         const nlohmann::json& overrides, const std::string& origin);
// `--sampler NAME [--karras]`: NAME.from_config(model config, **name overrides [, use_karras_sigmas=True]).
// Karras on a class without use_karras_sigmas (DDPM, DDIM, PNDM, Euler a, LCM) throws Error(InvalidArgument).
SchedulerConfig select_sampler(const SchedulerConfig& model_cfg, const std::string& name, bool karras,
                               const std::string& origin);
// What StableDiffusionPipeline.__init__ does to the scheduler it is built with (0.27.2 deprecation path):
// steps_offset != 1 -> 1, clip_sample true -> false (for classes that have the key). The explicit set is not
// changed, exactly as diffusers rewrites _internal_dict without touching _use_default_values.
SchedulerConfig apply_sd_pipeline_rewrite(const SchedulerConfig& c);
// The config a run uses when the request names class `k`: c itself when k == c.klass; a DDPM<->DDIM switch
// keeps every field (the two classes share their keys and defaults); otherwise k.from_config(c).
SchedulerConfig scheduler_config_for(const SchedulerConfig& c, SchedulerClass k);

// dict(scheduler.config): "_class_name", every key of the class, hidden keys, "_use_default_values".
// scheduler_config_from_json(scheduler_config_to_json(c)) == c.
nlohmann::json scheduler_config_to_json(const SchedulerConfig& c);
// One line for `diffrt info`: class, short name and the options that shape sampling, e.g.
// "PNDMScheduler (pndm): skip_prk_steps=true, prediction_type=epsilon, timestep_spacing=leading, steps_offset=1,
//  betas=scaled_linear 0.00085..0.012, T=1000".
std::string describe_scheduler(const SchedulerConfig& c);
// The short name of the sampler a config runs ("pndm", "euler-a"; DPM-Solver by variant: "dpmpp-2m",
// "dpmpp-2m-sde", "dpm-3m", ...), for descriptions and PNG metadata.
std::string sampler_display_name(const SchedulerConfig& c);
// The steps a sampler of this class takes when the request gives none (its usual diffusers pipeline's default):
// DDPM 1000, LCM 4, else 50.
int default_steps(SchedulerClass k);
// Re-checks a config built in code (same rules as the parser); throws Error(InvalidArgument).
void validate_scheduler_config(const SchedulerConfig& c, const std::string& origin);

const char* to_string(BetaSchedule v);
const char* to_string(TimestepSpacing v);
const char* to_string(VarianceType v);
const char* to_string(PredictionType v);
const char* to_string(SamplerKind v);  // the short name
const char* to_string(DpmAlgorithm v);
const char* to_string(SolverType v);
const char* to_string(FinalSigmas v);
const char* to_string(Interpolation v);
const char* to_string(TimestepType v);

}  // namespace diffrt
