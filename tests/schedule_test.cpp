// Schedules vs diffusers 0.27.2: betas / alphas_cumprod for every beta schedule (parsed from the
// real diffusers config dicts, so the parser is exercised on genuine input), set_timesteps for all
// spacings, and strict config validation (each bad field rejected with a message naming it).
// Fixtures: tests/fixtures/make_scheduler_fixtures.py -> tests/fixtures/scheduler/.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/npy.h"
#include "runtime/schedule.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;
using test::expect_error;

namespace {

const test::FixtureDir fx{"scheduler"};

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::fabs(double(a[i]) - double(b[i])) / std::max(std::fabs(double(b[i])), 1e-30);
    if (double(b[i]) == 0.0) d = std::fabs(double(a[i]));
    if (!std::isfinite(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

}  // namespace

TEST(Schedule, BetasAndAlphasCumprodMatchDiffusers) {
  json m = fx.manifest();
  ASSERT_FALSE(m["schedules"].empty());
  for (const json& s : m["schedules"]) {
    SchedulerConfig c = scheduler_config_from_json(s["config"], s["name"].get<std::string>());
    ScheduleTables t = compute_schedule(c);
    std::vector<float> betas = read_npy(fx(s["betas"])).as_f32();
    std::vector<float> acp = read_npy(fx(s["alphas_cumprod"])).as_f32();
    ASSERT_EQ(t.betas.size(), betas.size()) << s["name"];
    ASSERT_EQ(t.alphas_cumprod.size(), acp.size()) << s["name"];
    size_t exact = 0;
    for (size_t i = 0; i < acp.size(); ++i) exact += t.alphas_cumprod[i] == acp[i];
    double eb = max_rel(t.betas, betas), ea = max_rel(t.alphas_cumprod, acp);
    std::printf("[parity] schedule %-20s betas max rel %.3g, alphas_cumprod max rel %.3g (%zu/%zu bit-exact)\n",
                s["name"].get<std::string>().c_str(), eb, ea, exact, acp.size());
    EXPECT_LE(eb, 1e-6) << s["name"];
    EXPECT_LE(ea, 1e-6) << s["name"];
    if (s.contains("final_alpha_cumprod")) {
      EXPECT_EQ(t.final_alpha_cumprod, s["final_alpha_cumprod"].get<float>()) << s["name"];
    }
  }
}

TEST(Schedule, LinearAndScaledLinearAreBitExact) {
  // torch.linspace is emulated bit for bit (AVX2 kernel), so these are exact, not just close.
  json m = fx.manifest();
  for (const json& s : m["schedules"]) {
    std::string name = s["name"];
    if (name != "linear" && name != "scaled_linear_sd" && name != "scaled_linear_ldm" && name != "linear_t37")
      continue;
    ScheduleTables t = compute_schedule(scheduler_config_from_json(s["config"], name));
    std::vector<float> acp = read_npy(fx(s["alphas_cumprod"])).as_f32();
    for (size_t i = 0; i < acp.size(); ++i) ASSERT_EQ(t.alphas_cumprod[i], acp[i]) << name << " i=" << i;
  }
}

TEST(Schedule, TimestepsMatchDiffusers) {
  json m = fx.manifest();
  int checked = 0;
  for (const json& e : m["timesteps"]) {
    SchedulerConfig c;
    c.num_train_timesteps = e["T"];
    c.timestep_spacing = e["spacing"] == "leading" ? TimestepSpacing::Leading
                         : e["spacing"] == "linspace" ? TimestepSpacing::Linspace
                                                      : TimestepSpacing::Trailing;
    c.steps_offset = e["steps_offset"];
    const int N = e["N"];
    std::string what = e.dump().substr(0, 80);
    if (!e["valid"].get<bool>()) {
      expect_error([&] { inference_timesteps(c, N); }, ErrorCode::InvalidArgument, "steps_offset");
      continue;
    }
    std::vector<int64_t> ts = inference_timesteps(c, N);
    EXPECT_EQ(ts, e["timesteps"].get<std::vector<int64_t>>()) << what;
    std::vector<int64_t> prev = e["prev"].get<std::vector<int64_t>>();
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(previous_timestep(c, N, ts[i]), prev[i]) << what;
    ++checked;
  }
  std::printf("[parity] %d timestep lists exact\n", checked);
  EXPECT_GT(checked, 50);
}

TEST(Schedule, StepCountValidated) {
  SchedulerConfig c;
  expect_error([&] { inference_timesteps(c, 0); }, ErrorCode::InvalidArgument, "steps = 0");
  expect_error([&] { inference_timesteps(c, 1001); }, ErrorCode::InvalidArgument, "steps = 1001");
  EXPECT_EQ(inference_timesteps(c, 1000).size(), 1000u);
  EXPECT_EQ(inference_timesteps(c, 1).size(), 1u);
}

TEST(Schedule, DefaultsUnknownKeysAndClassName) {
  SchedulerConfig d = scheduler_config_from_json(json::object(), "t");
  EXPECT_EQ(d.num_train_timesteps, 1000);
  EXPECT_EQ(d.beta_schedule, BetaSchedule::Linear);
  EXPECT_TRUE(d.clip_sample);
  EXPECT_TRUE(d.set_alpha_to_one);
  EXPECT_EQ(d.variance_type, VarianceType::FixedSmall);
  EXPECT_FALSE(d.has_trained_betas);
  json j = {{"_class_name", "DDPMScheduler"}, {"_diffusers_version", "0.1"}, {"some_future_key", {1, 2}},
            {"variance_type", "fixed_large"}, {"beta_schedule", "squaredcos_cap_v2"}, {"trained_betas", nullptr}};
  SchedulerConfig c = scheduler_config_from_json(j, "t");
  EXPECT_EQ(c.class_name, "DDPMScheduler");
  EXPECT_EQ(c.variance_type, VarianceType::FixedLarge);
  // null variance_type behaves as fixed_small in diffusers 0.27.2.
  EXPECT_EQ(scheduler_config_from_json(json{{"variance_type", nullptr}}, "t").variance_type, VarianceType::FixedSmall);
  // Round trip.
  SchedulerConfig r = scheduler_config_from_json(scheduler_config_to_json(c), "rt");
  EXPECT_EQ(scheduler_config_to_json(r), scheduler_config_to_json(c));
}

TEST(Schedule, BadConfigsNameTheField) {
  struct Case { json patch; const char* field; ErrorCode code; };
  const ErrorCode M = ErrorCode::InvalidModel;
  std::vector<Case> cases = {
      {{{"num_train_timesteps", "1000"}}, "num_train_timesteps", M},
      {{{"num_train_timesteps", 1000.5}}, "num_train_timesteps", M},
      {{{"num_train_timesteps", 0}}, "num_train_timesteps", M},
      {{{"num_train_timesteps", -5}}, "num_train_timesteps", M},
      {{{"num_train_timesteps", 1000000000}}, "num_train_timesteps", M},
      {{{"beta_start", "0.0001"}}, "beta_start", M},
      {{{"beta_start", -0.1}}, "beta_start", M},
      {{{"beta_start", 0}}, "beta_start", M},
      {{{"beta_end", 1.5}}, "beta_end", M},
      {{{"beta_end", true}}, "beta_end", M},
      {{{"beta_start", 0.5}, {"beta_end", 0.1}}, "beta_start", M},
      {{{"beta_schedule", "laplace"}}, "beta_schedule", M},
      {{{"beta_schedule", 3}}, "beta_schedule", M},
      {{{"trained_betas", "x"}}, "trained_betas", M},
      {{{"trained_betas", {0.1, 0.2}}}, "trained_betas", M},  // length != T
      {{{"num_train_timesteps", 2}, {"trained_betas", {0.1, -0.2}}}, "trained_betas", M},
      {{{"num_train_timesteps", 2}, {"trained_betas", {0.1, "a"}}}, "trained_betas", M},
      {{{"variance_type", "fixed_large_log"}}, "variance_type", ErrorCode::Unsupported},
      {{{"variance_type", "bogus"}}, "variance_type", M},
      {{{"clip_sample", 1}}, "clip_sample", M},
      {{{"clip_sample", "true"}}, "clip_sample", M},
      {{{"clip_sample_range", 0}}, "clip_sample_range", M},
      {{{"clip_sample_range", -1.0}}, "clip_sample_range", M},
      {{{"prediction_type", "eps"}}, "prediction_type", M},
      {{{"thresholding", nullptr}}, "thresholding", M},
      {{{"dynamic_thresholding_ratio", 1.5}}, "dynamic_thresholding_ratio", M},
      {{{"dynamic_thresholding_ratio", 0}}, "dynamic_thresholding_ratio", M},
      {{{"sample_max_value", 0}}, "sample_max_value", M},
      {{{"sample_max_value", "1"}}, "sample_max_value", M},
      {{{"timestep_spacing", "uniform"}}, "timestep_spacing", M},
      {{{"steps_offset", -1}}, "steps_offset", M},
      {{{"steps_offset", 1.0}}, "steps_offset", M},
      {{{"steps_offset", 1000}}, "steps_offset", M},
      {{{"set_alpha_to_one", 0}}, "set_alpha_to_one", M},
      {{{"rescale_betas_zero_snr", "yes"}}, "rescale_betas_zero_snr", M},
      {{{"_class_name", 5}}, "_class_name", M},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    expect_error([&] { scheduler_config_from_json(c.patch, "sched.json"); }, c.code, c.field);
    expect_error([&] { scheduler_config_from_json(c.patch, "sched.json"); }, c.code, "sched.json");
  }
  // Enum errors list the valid values.
  expect_error([&] { scheduler_config_from_json(json{{"prediction_type", "x"}}, "o"); }, M,
               "epsilon, sample, v_prediction");
  expect_error([&] { scheduler_config_from_json(json::array(), "o"); }, M, "JSON object");
  // Code-built configs are checked too.
  SchedulerConfig c;
  c.beta_end = 2.0;
  expect_error([&] { validate_scheduler_config(c, "api"); }, ErrorCode::InvalidArgument, "beta_end");
}

TEST(Schedule, LinspaceEdgeCases) {
  EXPECT_TRUE(torch_linspace_f32(0, 1, 0).empty());
  EXPECT_EQ(torch_linspace_f32(0.25, 1, 1), std::vector<float>{0.25f});
  std::vector<float> v = torch_linspace_f32(-6, 6, 1000);
  EXPECT_EQ(v.front(), -6.0f);
  EXPECT_EQ(v.back(), 6.0f);
}
