// run_sampler against the 160 sampling loops diffusers 0.27.2 ran with a weightless fake UNet
// (tests/fixtures/samplers "loops": every scheduler class, prediction type, spacing, Karras, orders, SDE,
// thresholding, CFG and img2img). The loops' x_T, image latents and scheduler draws are fed in, so the
// comparison is of the sampler alone: every model input (the trajectory, through scale_model_input), the model
// timesteps, the generator draw counts and the final latents. Prints the max error per class.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "runtime/sampler.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;

namespace {

const test::FixtureDir fx{"samplers"};

// NCHW [n, C, H, W] -> NHWC.
std::vector<float> to_nhwc(const float* src, int n, int c, int h, int w) {
  std::vector<float> out(size_t(n) * c * h * w);
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(size_t(b) * h * w + i) * c + ch] = src[(size_t(b) * c + ch) * h * w + i];
  return out;
}

struct Stats {
  int cases = 0, exact = 0;
  double max_rel = 0;
};

}  // namespace

TEST(SamplerLoops, MatchDiffusers) {
  std::map<std::string, Stats> stats;
  int total = 0;
  for (const json& e : fx.manifest().at("loops")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const json& ce = fx.manifest().at("configs").at(e.at("config_id").get<std::string>());
    json cj = ce.at("config");
    cj["_class_name"] = ce.at("class");
    const SchedulerConfig cfg = scheduler_config_from_json(cj, name);
    const std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
    const int B = int(shape[0]), C = int(shape[1]), H = int(shape[2]), W = int(shape[3]);
    const size_t per = size_t(C) * H * W;
    SampleRequest r;
    r.sampler = cfg.klass;
    r.steps = e.at("N");
    r.batch = B; r.channels = C; r.height = H; r.width = W;
    r.rng = RngKind::Torch;
    if (e.at("cfg").get<bool>()) {
      r.text_cfg = true;
      r.guidance_scale = e.at("guidance_scale").get<float>();
    }
    if (!e.at("eta").is_null()) r.eta = e.at("eta").get<float>();
    SamplerInputs in;
    const std::vector<float> xT = to_nhwc(read_npy(fx(e.at("x_T"))).as_f32().data(), B, C, H, W);
    in.initial_noise = xT.data();
    std::vector<float> x0;
    if (e.contains("img2img")) {
      const json& ii = e.at("img2img");
      r.img2img = true;
      r.start_from_image = true;
      r.strength = ii.at("strength").get<double>();
      x0 = to_nhwc(read_npy(fx(ii.at("x0"))).as_f32().data(), B, C, H, W);
      in.image_latents = x0.data();
    }
    std::vector<float> noise;
    int n_draws = 0;
    for (const json& d : e.at("step_draws")) n_draws += d.get<int>();
    if (!e.at("noise").is_null()) {
      const NpyArray a = read_npy(fx(e.at("noise")));
      noise = to_nhwc(a.as_f32().data(), int(a.shape[0]) * B, C, H, W);
    }
    int draws_seen = 0;
    in.step_noise = [&](int d, float* out) {
      ++draws_seen;
      if (noise.empty()) { std::fill(out, out + size_t(B) * per, 0.0f); return; }  // Euler's unused draws
      ASSERT_LT(size_t(d + 1) * B * per, noise.size() + 1);
      std::copy(noise.begin() + size_t(d) * B * per, noise.begin() + size_t(d + 1) * B * per, out);
    };
    // The trajectory: model input i = traj[i] / model_in_divisor[i] (scale_model_input), per CFG half.
    const NpyArray tr = read_npy(fx(e.at("traj")));
    const int n_traj = int(tr.shape[0]);
    const std::vector<float> traj = to_nhwc(tr.as_f32().data(), n_traj * B, C, H, W);
    const std::vector<double> div = e.at("model_in_divisor").get<std::vector<double>>();
    const json& mts = e.at("model_timesteps");
    double max_abs = 0, ref_max = 0;
    int call = 0;
    UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
      ASSERT_EQ(labels, nullptr);
      ASSERT_LT(call, n_traj - 1);
      EXPECT_EQ(t[0], float(mts[size_t(call)].get<double>())) << "model timestep at call " << call;
      const float d = float(div[size_t(call)]);
      for (int row = 0; row < bm; ++row)
        for (size_t j = 0; j < per; ++j) {
          const float want = traj[size_t(call) * B * per + size_t(row % B) * per + j] / d;
          max_abs = std::max(max_abs, double(std::fabs(x[size_t(row) * per + j] - want)));
          ref_max = std::max(ref_max, double(std::fabs(want)));
        }
      const float kk = (0.01f * t[0]) / 1000.0f;
      for (int row = 0; row < bm; ++row) {
        const float cb = (r.text_cfg && row >= B) ? 1.0f : 0.0f;
        for (size_t j = 0; j < per; ++j) {
          float v = (0.1f * x[size_t(row) * per + j]) + kk;
          v = v + (0.05f * cb);
          out[size_t(row) * per + j] = v;
        }
      }
      ++call;
    };
    std::vector<float> xf;
    try {
      xf = run_sampler(cfg, r, C, unet, {}, in);
    } catch (const Error& err) {
      ADD_FAILURE() << "run_sampler threw: " << err.what();
      continue;
    }
    EXPECT_EQ(call, n_traj - 1) << "model calls";
    EXPECT_EQ(draws_seen, n_draws) << "generator draws";
    const float* last = traj.data() + size_t(n_traj - 1) * B * per;
    bool exact = std::memcmp(xf.data(), last, xf.size() * sizeof(float)) == 0;
    for (size_t j = 0; j < xf.size(); ++j) {
      max_abs = std::max(max_abs, double(std::fabs(xf[j] - last[j])));
      ref_max = std::max(ref_max, double(std::fabs(last[j])));
    }
    exact = exact && max_abs == 0.0;
    const double rel = max_abs / std::max(ref_max, 1e-30);
    EXPECT_LE(rel, 2e-6) << "max |diff| " << max_abs << " over max |x| " << ref_max;
    Stats& s = stats[ce.at("class").get<std::string>()];
    ++s.cases;
    s.exact += exact;
    s.max_rel = std::max(s.max_rel, rel);
    ++total;
  }
  for (const auto& [k, s] : stats)
    std::printf("[loops] %-34s %3d loops, %3d bit-exact, max error %.3g relative to max |x|\n", k.c_str(), s.cases,
                s.exact, s.max_rel);
  EXPECT_EQ(total, 160);
}
