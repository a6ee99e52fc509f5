// set_timesteps of every scheduler class against diffusers 0.27.2 (tests/fixtures/samplers "tables", 190 cases):
// timesteps in their dtype (float64 for Heun + Karras), sigmas as float32 bits, init_noise_sigma, order, the
// scale_model_input divisor of every model call, the img2img start (t_start, begin index, add_noise at the start
// and after each step), and the errors diffusers raises; plus the import cases' schedules for N = 10 and 25.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "runtime/sampler_schedule.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

const test::FixtureDir fx{"samplers"};

SchedulerConfig config_of(const std::string& id) {
  const json& e = fx.manifest().at("configs").at(id);
  json j = e.at("config");
  j["_class_name"] = e.at("class");
  return scheduler_config_from_json(j, id);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }
// Distance in units in the last place between two finite floats of the same sign.
int ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(ia - ib);
}

}  // namespace

TEST(SamplerSchedule, TablesMatchDiffusers) {
  std::map<std::string, int> per_class, mismatched;
  for (const json& e : fx.manifest().at("tables")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const SchedulerConfig c = config_of(e.at("config_id"));
    const ScheduleTables tables = compute_schedule(c);
    const int N = e.at("N");
    const std::string cls = e.at("class");
    if (e.contains("error") || name.find("trailing_n61") != std::string::npos) {
      // diffusers raises (PRK N < 4, LCM N > original steps) or gives a -1 timestep (trailing N+1): refused.
      EXPECT_THROW(class_schedule(c, tables, N), Error);
      ++per_class[cls];
      continue;
    }
    const ClassSchedule s = class_schedule(c, tables, N);
    bool ok = true;
    // timesteps
    const NpyArray ts = read_npy(fx(e.at("timesteps")));
    const std::string dtype = e.at("timesteps_dtype");
    if (dtype == "int64") {
      EXPECT_EQ(s.ts_dtype, TimestepDType::Int64);
      const std::vector<int64_t> want = ts.as_i64();
      ok &= s.timesteps.size() == want.size();
      for (size_t i = 0; ok && i < want.size(); ++i) ok &= s.timesteps[i] == double(want[i]);
    } else if (dtype == "float32") {
      EXPECT_EQ(s.ts_dtype, TimestepDType::Float32);
      const std::vector<float> want = ts.as_f32();
      ok &= s.timesteps.size() == want.size();
      for (size_t i = 0; ok && i < want.size(); ++i) ok &= same_bits(float(s.timesteps[i]), want[i]);
    } else {
      EXPECT_EQ(s.ts_dtype, TimestepDType::Float64);
      const std::vector<double> want = e.at("timesteps_f64").get<std::vector<double>>();
      ok &= s.timesteps.size() == want.size();
      for (size_t i = 0; ok && i < want.size(); ++i) ok &= s.timesteps[i] == want[i];
    }
    EXPECT_TRUE(ok) << "timesteps differ";
    // sigmas
    if (!e.at("sigmas").is_null()) {
      const std::vector<float> want = read_npy(fx(e.at("sigmas"))).as_f32();
      bool sok = s.sigmas.size() == want.size();
      // Euler log_linear sigmas are torch's float32 exp (Sleef) of a linspace; diffrt's exp is correctly rounded,
      // 1 ulp away on some arguments (1 of the 11 values of euler_loglin_n10). Everything else is bit-exact.
      const int tol = c.interpolation_type == Interpolation::LogLinear && c.klass == SchedulerClass::EulerDiscrete ? 1 : 0;
      for (size_t i = 0; sok && i < want.size(); ++i) sok &= ulps(s.sigmas[i], want[i]) <= tol;
      EXPECT_TRUE(sok) << "sigmas differ";
      ok &= sok;
    } else {
      EXPECT_TRUE(s.sigmas.empty());
    }
    EXPECT_TRUE(same_bits(s.init_noise_sigma, float(e.at("init_noise_sigma").get<double>())))
        << s.init_noise_sigma << " vs " << e.at("init_noise_sigma");
    EXPECT_EQ(s.init_noise_sigma_tensor, e.at("init_noise_sigma_type") == "float32");
    EXPECT_EQ(s.order, int(e.at("order")));
    // model calls and scale divisors (after the img2img slice)
    int begin = 0;
    if (e.contains("img2img")) {
      const json& ii = e.at("img2img");
      const Img2ImgStart st = img2img_start(c, tables, s, ii.at("strength").get<double>());
      EXPECT_EQ(st.t_start, int(ii.at("t_start")));
      if (ii.at("begin_index").is_null()) EXPECT_FALSE(st.has_begin_index);
      else {
        EXPECT_TRUE(st.has_begin_index);
        EXPECT_EQ(st.begin_index, int(ii.at("begin_index")));
      }
      begin = st.begin_index;
      EXPECT_EQ(st.latent_timestep, ii.at("latent_timestep")[0].get<double>());
      EXPECT_TRUE(same_bits(st.noise_a, float(ii.at("add_noise_at_start")[0].get<double>())));
      EXPECT_TRUE(same_bits(st.noise_b, float(ii.at("add_noise_at_start")[1].get<double>())));
      const json& after = ii.at("add_noise_after_step");
      for (size_t i = 0; i < after.size(); ++i) {
        const int idx = begin + int(i) + 1;
        const NoiseMix m = st.has_begin_index ? add_noise_at(c, tables, s, idx)
                                              : add_noise_acp(tables, int64_t(s.timesteps[size_t(idx)]));
        EXPECT_TRUE(same_bits(m.a, float(after[i][0].get<double>()))) << "after step " << i;
        EXPECT_TRUE(same_bits(m.b, float(after[i][1].get<double>()))) << "after step " << i;
      }
    }
    EXPECT_EQ(int(s.timesteps.size()) - begin, int(e.at("model_calls")));
    const json& div = e.at("scale_divisor");
    for (size_t i = 0; i < div.size(); ++i)
      EXPECT_TRUE(same_bits(s.scale_divisor.at(size_t(begin) + i), float(div[i].get<double>()))) << "divisor " << i;
    if (!ok) ++mismatched[cls];
    ++per_class[cls];
  }
  int total = 0;
  for (const auto& [k, v] : per_class) {
    std::printf("[tables] %-34s %3d cases, %d with differing timesteps/sigmas\n", k.c_str(), v, mismatched[k]);
    total += v;
  }
  EXPECT_EQ(total, 190);
}

TEST(SamplerSchedule, ImportCaseSchedules) {
  for (const json& e : fx.manifest().at("imports")) {
    if (!e.contains("schedules")) continue;
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    json cfg = e.at("effective_config");
    if (!cfg.contains("_class_name")) cfg["_class_name"] = e.at("target_class");
    const SchedulerConfig c = scheduler_config_from_json(cfg, name);
    const ScheduleTables tables = compute_schedule(c);
    for (const auto& [n, want] : e.at("schedules").items()) {
      SCOPED_TRACE("N=" + n);
      const ClassSchedule s = class_schedule(c, tables, std::stoi(n));
      const std::vector<double> wt = want.at("timesteps").get<std::vector<double>>();
      ASSERT_EQ(s.timesteps.size(), wt.size());
      for (size_t i = 0; i < wt.size(); ++i) {
        if (s.ts_dtype == TimestepDType::Float32) EXPECT_TRUE(same_bits(float(s.timesteps[i]), float(wt[i]))) << i;
        else EXPECT_EQ(s.timesteps[i], wt[i]) << i;
      }
      if (want.contains("sigmas") && !want.at("sigmas").is_null()) {
        const std::vector<double> ws = want.at("sigmas").get<std::vector<double>>();
        ASSERT_EQ(s.sigmas.size(), ws.size());
        for (size_t i = 0; i < ws.size(); ++i) EXPECT_TRUE(same_bits(s.sigmas[i], float(ws[i]))) << i;
      }
      EXPECT_TRUE(same_bits(s.init_noise_sigma, float(want.at("init_noise_sigma").get<double>())));
    }
  }
}
