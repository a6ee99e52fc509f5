// run_sampler vs the real DDPMPipeline / DDIMPipeline (diffusers 0.27.2) driven by a weightless
// fake UNet eps(x, t) = 0.1*x + 0.01*t/1000 with a seeded torch generator (torch RNG mode), and a
// replicated class-conditional CFG DDIM loop; plus Philox batch-position independence, the CFG
// model batch layout, cancellation and request validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/npy.h"
#include "runtime/sampler.h"
#include "tests/test_util.h"

using namespace diffrt;
using json = nlohmann::json;
using test::expect_error;

namespace {

const test::FixtureDir fx{"scheduler"};

// The fixture's fake UNet, in the same float32 operation order as the torch expression
// 0.1 * x + 0.01 * t.float() / 1000 (+ label_coeff * label).
UNetFn fake_unet(int channels, float label_coeff) {
  return [channels, label_coeff](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
    (void)channels;
    const size_t per = size_t(8) * 8 * 3;
    for (int n = 0; n < bm; ++n) {
      const float tt = (0.01f * t[n]) / 1000.0f;
      for (size_t i = 0; i < per; ++i) {
        float v = 0.1f * x[n * per + i] + tt;
        if (labels) v = v + label_coeff * float(labels[n]);
        out[n * per + i] = v;
      }
    }
  };
}

// Generic per-row-independent fake model for any shape: out = 0.2*x + t/5000 + 0.03*label.
UNetFn generic_unet(size_t per, int cm, int c, std::vector<int>* bms = nullptr,
                    std::vector<std::vector<int32_t>>* seen_labels = nullptr) {
  return [=](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
    if (bms) bms->push_back(bm);
    if (seen_labels) seen_labels->push_back(labels ? std::vector<int32_t>(labels, labels + bm) : std::vector<int32_t>{});
    const size_t pix = per / size_t(c);
    for (int n = 0; n < bm; ++n)
      for (size_t p = 0; p < pix; ++p)
        for (int ch = 0; ch < cm; ++ch) {
          float xv = x[n * per + p * c + (ch % c)];
          float v = ch < c ? 0.2f * xv + t[n] / 5000.0f + (labels ? 0.03f * float(labels[n]) : 0.f)
                           : std::tanh(xv);
          out[(n * pix + p) * cm + ch] = v;
        }
  };
}

}  // namespace

TEST(Sampler, ReproducesDiffusersPipelinesWithTorchRng) {
  json m = fx.manifest();
  ASSERT_FALSE(m["pipelines"].empty());
  for (const json& e : m["pipelines"]) {
    const std::string name = e["name"];
    SCOPED_TRACE(name);
    SchedulerConfig cfg = scheduler_config_from_json(e["config"], name);
    SampleRequest r;
    r.sampler = e["kind"] == "ddpm" ? SamplerKind::Ddpm : SamplerKind::Ddim;
    r.steps = e["steps"];
    r.eta = e["eta"];
    r.seed = e["seed"];
    r.rng = RngKind::Torch;
    r.batch = e["batch"];
    r.height = e["height"]; r.width = e["width"]; r.channels = e["channels"];
    float label_coeff = 0.f;
    if (e.contains("labels")) {
      r.class_labels = e["labels"].get<std::vector<int32_t>>();
      r.null_class = e["null_class"];
      r.guidance_scale = e["guidance_scale"];
      label_coeff = e["label_coeff"];
    }
    int calls = 0;
    std::vector<float> x = run_sampler(cfg, r, r.channels, fake_unet(r.channels, label_coeff),
                                       [&](int step, int total) { ++calls; EXPECT_EQ(total, r.steps); (void)step; return true; });
    EXPECT_EQ(calls, r.steps);
    std::vector<float> img = to_image_01(x);
    std::vector<float> want = read_npy(fx(e["image"])).as_f32();  // [B, H, W, C]
    ASSERT_EQ(img.size(), want.size());
    double d = test::max_abs_diff(img.data(), want.data(), img.size());
    std::printf("[parity] pipeline %-26s max |image diff| %.3g\n", name.c_str(), d);
    EXPECT_LE(d, 1e-4);
  }
}

TEST(Sampler, PhiloxSampleIndependentOfBatchPosition) {
  SchedulerConfig cfg;
  const int H = 6, W = 5, C = 3;
  const size_t per = size_t(H) * W * C;
  for (SamplerKind kind : {SamplerKind::Ddpm, SamplerKind::Ddim}) {
    for (bool cfg_on : {false, true}) {
      SampleRequest r;
      r.sampler = kind;
      r.steps = 8;
      r.eta = kind == SamplerKind::Ddim ? 0.6f : 0.f;
      r.seed = 99;
      r.batch = 3;
      r.height = H; r.width = W; r.channels = C;
      if (cfg_on) { r.class_labels = {3, 1, 2}; r.null_class = 5; r.guidance_scale = 2.5f; }
      std::vector<float> batch = run_sampler(cfg, r, C, generic_unet(per, C, C), nullptr);
      SampleRequest one = r;
      one.batch = 1;
      one.first_sample_index = 2;
      if (cfg_on) one.class_labels = {2};
      std::vector<float> single = run_sampler(cfg, one, C, generic_unet(per, C, C), nullptr);
      for (size_t i = 0; i < per; ++i) ASSERT_EQ(batch[2 * per + i], single[i]) << "i=" << i;
      // Rows differ from each other (distinct noise streams).
      EXPECT_NE(std::vector<float>(batch.begin(), batch.begin() + per), std::vector<float>(batch.begin() + per, batch.begin() + 2 * per));
    }
  }
}

TEST(Sampler, CfgModelBatchLayout) {
  SchedulerConfig cfg;
  cfg.variance_type = VarianceType::LearnedRange;
  const int H = 4, W = 4, C = 2;
  const size_t per = size_t(H) * W * C;
  SampleRequest r;
  r.steps = 4;
  r.batch = 2;
  r.height = H; r.width = W; r.channels = C;
  r.class_labels = {7, 3};
  r.null_class = 10;
  r.guidance_scale = 3.0f;
  std::vector<int> bms;
  std::vector<std::vector<int32_t>> labels;
  run_sampler(cfg, r, 2 * C, generic_unet(per, 2 * C, C, &bms, &labels), nullptr);
  ASSERT_EQ(bms.size(), 4u);
  EXPECT_EQ(bms[0], 4);
  EXPECT_EQ(labels[0], (std::vector<int32_t>{10, 10, 7, 3}));
  // guidance <= 1: labels only, B rows.
  r.guidance_scale = 1.0f;
  bms.clear(); labels.clear();
  run_sampler(cfg, r, 2 * C, generic_unet(per, 2 * C, C, &bms, &labels), nullptr);
  EXPECT_EQ(bms[0], 2);
  EXPECT_EQ(labels[0], (std::vector<int32_t>{7, 3}));
  // Unconditional: no labels pointer.
  r.class_labels.clear();
  bms.clear(); labels.clear();
  run_sampler(cfg, r, 2 * C, generic_unet(per, 2 * C, C, &bms, &labels), nullptr);
  EXPECT_TRUE(labels[0].empty());
}

TEST(Sampler, ProgressCanCancel) {
  SchedulerConfig cfg;
  SampleRequest r;
  r.steps = 10;
  r.height = 2; r.width = 2; r.channels = 1;
  int last = 0;
  expect_error([&] {
    run_sampler(cfg, r, 1, generic_unet(4, 1, 1), [&](int step, int) { last = step; return step < 3; });
  }, ErrorCode::Cancelled, "cancelled");
  EXPECT_EQ(last, 3);
}

TEST(Sampler, RequestValidation) {
  SchedulerConfig cfg;
  auto base = [] {
    SampleRequest r;
    r.steps = 10; r.height = 4; r.width = 4; r.channels = 3;
    return r;
  };
  const ErrorCode A = ErrorCode::InvalidArgument;
  auto run = [&](const SampleRequest& r, int cm = 3) { return [&cfg, r, cm] { validate_sample_request(cfg, r, cm); }; };
  { auto r = base(); r.steps = 1001; expect_error(run(r), A, "steps = 1001"); }
  { auto r = base(); r.steps = -1; expect_error(run(r), A, "steps = -1"); }
  { auto r = base(); r.batch = 0; expect_error(run(r), A, "batch = 0"); }
  { auto r = base(); r.height = 0; expect_error(run(r), A, "height=0"); }
  { auto r = base(); r.sampler = SamplerKind::Ddim; r.eta = 1.5f; expect_error(run(r), A, "eta"); }
  { auto r = base(); r.eta = 0.5f; expect_error(run(r), A, "eta applies to ddim"); }
  { auto r = base(); r.class_labels = {1}; r.batch = 2; expect_error(run(r), A, "class_labels"); }
  { auto r = base(); r.class_labels = {-2}; expect_error(run(r), A, "class label -2"); }
  { auto r = base(); r.guidance_scale = 2.f; expect_error(run(r), A, "needs class_labels"); }
  { auto r = base(); r.guidance_scale = 2.f; r.class_labels = {1}; expect_error(run(r), A, "null_class"); }
  { auto r = base(); expect_error(run(r, 4), A, "model output channels 4"); }
  {
    SchedulerConfig lc;
    lc.variance_type = VarianceType::Learned;
    auto r = base();
    expect_error([&] { validate_sample_request(lc, r, 3); }, A, "learned");
  }
  { auto r = base(); r.steps = 0; EXPECT_NO_THROW(run(r)()); }  // 0 = pipeline default
}

TEST(Sampler, ToImage01) {
  std::vector<float> y = to_image_01({-3.f, -1.f, 0.f, 0.5f, 1.f, 2.f});
  EXPECT_EQ(y, (std::vector<float>{0.f, 0.f, 0.5f, 0.75f, 1.f, 1.f}));
}
