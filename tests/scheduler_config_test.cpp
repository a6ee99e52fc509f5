// Scheduler configs against diffusers 0.27.2 (tests/fixtures/samplers/manifest.json "imports"): the effective
// config, _use_default_values and hidden keys of X.from_config(source, **overrides) for the published SD 1.5
// file, a file re-saved by 0.27.2, SD 2.1- and SDXL-like files, an Euler config with sigma_min/sigma_max, a chain,
// and StableDiffusionPipeline's constructor rewrite; plus names, strict typing and the JSON round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "model/scheduler_config.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

const json& manifest() {
  static const json m = [] {
    std::ifstream f(test::source_path("tests/fixtures/samplers/manifest.json"));
    return json::parse(f);
  }();
  return m;
}

SchedulerClass class_of(const std::string& name) {
  for (int i = 0; i < kNumSchedulerClasses; ++i)
    if (name == scheduler_class_name(SchedulerClass(i))) return SchedulerClass(i);
  ADD_FAILURE() << "unknown class " << name;
  return SchedulerClass::Ddpm;
}

// Compares our config with diffusers' dict(scheduler.config).
void expect_effective(const SchedulerConfig& c, const json& want, const std::string& name) {
  SCOPED_TRACE(name);
  const json ours = scheduler_config_to_json(c);
  std::vector<std::string> want_defaults;
  if (want.contains("_use_default_values")) want_defaults = want.at("_use_default_values").get<std::vector<std::string>>();
  std::vector<std::string> our_defaults = ours.at("_use_default_values").get<std::vector<std::string>>();
  std::sort(want_defaults.begin(), want_defaults.end());
  std::sort(our_defaults.begin(), our_defaults.end());
  EXPECT_EQ(our_defaults, want_defaults);
  for (auto it = want.begin(); it != want.end(); ++it) {
    if (it.key()[0] == '_') continue;
    ASSERT_TRUE(ours.contains(it.key())) << "missing key " << it.key();
    EXPECT_EQ(ours[it.key()], it.value()) << "key " << it.key();
  }
  for (auto it = ours.begin(); it != ours.end(); ++it)
    if (it.key()[0] != '_') {
      EXPECT_TRUE(want.contains(it.key())) << "extra key " << it.key();
    }
}

}  // namespace

TEST(SchedulerConfig, ImportCasesMatchDiffusersFromConfig) {
  int checked = 0;
  for (const json& e : manifest().at("imports")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const json& want = e.at("effective_config");
    if (e.contains("file_content") || e.contains("file")) {
      json content;
      if (e.contains("file")) {
        std::ifstream f(test::source_path(e.at("file").get<std::string>()));
        content = json::parse(f);
      } else {
        content = e.at("file_content");
      }
      SchedulerConfig c = scheduler_config_from_json(content, name);
      EXPECT_EQ(c.klass, class_of(e.at("loaded_class")));
      expect_effective(c, want, name);
      ++checked;
      continue;
    }
    json src = e.at("source_config");
    if (!src.contains("_class_name")) {
      // pipeline_ctor_rewrite: a DDIMScheduler built in code
      src["_class_name"] = e.contains("source_class") ? e.at("source_class") : json("DDIMScheduler");
    }
    SchedulerConfig s = scheduler_config_from_json(src, name + " source");
    if (name == "pipeline_ctor_rewrite") {
      expect_effective(apply_sd_pipeline_rewrite(s), want, name);
      ++checked;
      continue;
    }
    SchedulerConfig c = resolve_scheduler_config(s, class_of(e.at("target_class")), e.at("overrides"), name);
    expect_effective(c, want, name);
    std::vector<std::string> hidden;
    for (const auto& [k, v] : c.hidden) hidden.push_back(k);
    std::vector<std::string> want_hidden = e.at("hidden_keys").get<std::vector<std::string>>();
    std::sort(want_hidden.begin(), want_hidden.end());
    EXPECT_EQ(hidden, want_hidden);
    ++checked;
  }
  EXPECT_EQ(checked, 35);
}

TEST(SchedulerConfig, EveryTableAndLoopConfigParses) {
  // Every effective config the fixtures recorded (200) parses as its class and round-trips through JSON.
  for (const auto& [id, e] : manifest().at("configs").items()) {
    SCOPED_TRACE(id);
    // c187 is pipeline_ctor_rewrite's result: values rewritten after construction while _use_default_values
    // still lists them, so it does not read back as itself (checked by ImportCasesMatchDiffusersFromConfig).
    if (id == "c187") continue;
    json j = e.at("config");
    j["_class_name"] = e.at("class");
    SchedulerConfig c = scheduler_config_from_json(j, id);
    expect_effective(c, e.at("config"), id);
    SchedulerConfig back = scheduler_config_from_json(scheduler_config_to_json(c), id);
    EXPECT_EQ(scheduler_config_to_json(back), scheduler_config_to_json(c));
  }
}

TEST(SchedulerConfig, NamesAndSelection) {
  EXPECT_EQ(parse_sampler_name("dpmpp-2m").klass, SchedulerClass::DpmSolverMultistep);
  EXPECT_EQ(parse_sampler_name("DPMSolverMultistepScheduler").klass, SchedulerClass::DpmSolverMultistep);
  EXPECT_EQ(parse_sampler_name("euler-a").klass, SchedulerClass::EulerAncestral);
  try {
    parse_sampler_name("dpm++");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    for (const char* n : {"ddpm", "ddim", "pndm", "dpmpp-2m", "dpmpp-2m-sde", "euler", "euler-a", "heun", "unipc", "lcm",
                          "LCMScheduler"})
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << n << " missing from: " << e.what();
  }
  // SD 1.5 published file: --sampler dpmpp-2m-sde --karras.
  json sd15 = json::parse(R"({"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
    "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null})");
  SchedulerConfig model = scheduler_config_from_json(sd15, "sd15");
  SchedulerConfig c = select_sampler(model, "dpmpp-2m-sde", true, "test");
  EXPECT_EQ(c.klass, SchedulerClass::DpmSolverMultistep);
  EXPECT_EQ(c.algorithm_type, DpmAlgorithm::SdeDpmSolverPP);
  EXPECT_TRUE(c.use_karras_sigmas);
  EXPECT_EQ(c.timestep_spacing, TimestepSpacing::Linspace);  // absent from the file: DPM's own default
  EXPECT_EQ(c.steps_offset, 1);
  EXPECT_EQ(c.beta_schedule, BetaSchedule::ScaledLinear);
  EXPECT_THROW(select_sampler(model, "euler-a", true, "test"), Error);
  EXPECT_EQ(describe_scheduler(model).substr(0, 21), "PNDMScheduler (pndm):");
  // DDIM from the PNDM file inherits the hidden clip_sample=false.
  SchedulerConfig ddim = scheduler_config_for(model, SchedulerClass::Ddim);
  EXPECT_FALSE(ddim.clip_sample);
  EXPECT_FALSE(ddim.set_alpha_to_one);
}

TEST(SchedulerConfig, StrictTypesAndValues) {
  auto parse = [](const std::string& text) { return scheduler_config_from_json(json::parse(text), "t"); };
  auto expect_fail = [&](const std::string& text, ErrorCode code, const std::string& needle) {
    try {
      parse(text);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_EQ(int(e.code()), int(code)) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_fail(R"({"_class_name": "LMSDiscreteScheduler"})", ErrorCode::Unsupported, "UniPCMultistepScheduler");
  expect_fail(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 2.0})", ErrorCode::InvalidModel, "integer");
  expect_fail(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4})", ErrorCode::Unsupported, "solver_order");
  expect_fail(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpm"})", ErrorCode::InvalidModel,
              "sde-dpmsolver++");
  expect_fail(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"})", ErrorCode::InvalidModel,
              "sigma_min");
  expect_fail(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": 1})", ErrorCode::InvalidModel, "true or false");
  expect_fail(R"({"_class_name": "EulerAncestralDiscreteScheduler", "prediction_type": "sample"})", ErrorCode::InvalidModel,
              "v_prediction");
  expect_fail(R"({"_class_name": "UniPCMultistepScheduler", "solver_p": {}})", ErrorCode::Unsupported, "solver_p");
  expect_fail(R"({"_class_name": 3})", ErrorCode::InvalidModel, "_class_name");
  // A key the class does not take is not validated (diffusers keeps it as a hidden key).
  SchedulerConfig c = parse(R"({"_class_name": "EulerDiscreteScheduler", "solver_order": "two"})");
  EXPECT_EQ(c.hidden.at("solver_order"), "\"two\"");
  // DPM's deis and UniPC's midpoint are rewritten as the constructors do.
  EXPECT_EQ(parse(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "deis"})").algorithm_type,
            DpmAlgorithm::DpmSolverPP);
  EXPECT_EQ(parse(R"({"_class_name": "UniPCMultistepScheduler", "solver_type": "midpoint"})").solver_type, SolverType::Bh2);
  // Python's -Infinity, as diffusers writes lambda_min_clipped.
  json j = parse_scheduler_config_text(
      R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "note": "-Infinity"})", "t");
  SchedulerConfig d = scheduler_config_from_json(j, "t");
  EXPECT_TRUE(std::isinf(d.lambda_min_clipped) && d.lambda_min_clipped < 0);
  EXPECT_EQ(d.hidden.at("note"), "\"-Infinity\"");
  EXPECT_THROW(parse_scheduler_config_text(R"({"a": -Infinity, "a": 1})", "t"), Error);  // duplicate keys
}
