// DiT through the C++ API (api/diffrt.hpp) on the CPU: a converted DiTPipeline file loads with the class-conditional
// info a caller needs, eval matches diffusers' transformer output, and (disabled until the API decodes
// class-conditional latent models) sample() with guidance and --rng torch semantics matches DiTPipeline's images
// (tests/fixtures/dit, diffusers 0.27.2).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "api/diffrt.hpp"
#include "base/npy.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

const std::string& converted_s8() {
  static const std::string path = [] {
    ConvertOptions opt;
    opt.input = test::source_path("tests/fixtures/dit/dit_s8_sigma/pipeline");
    opt.output = test::temp_dir("dit_api") + "/dit.drt";
    convert_diffusers(opt);
    return opt.output;
  }();
  return path;
}

fs::path fx(const std::string& rel) { return test::source_path("tests/fixtures/dit/dit_s8_sigma/" + rel); }

}  // namespace

TEST(DiTApi, ModelInfo) {
  auto m = Model::load(converted_s8());
  const ModelInfo& i = m->info();
  EXPECT_EQ(i.in_channels, 4);
  EXPECT_EQ(i.out_channels, 8);  // epsilon + learned sigma
  EXPECT_EQ(i.sample_size, 8);
  EXPECT_EQ(i.downsample_factor, 2);  // the patch size
  EXPECT_EQ(i.num_classes, 1001);     // 1000 classes + the learned null row
  EXPECT_EQ(i.null_class, 1000);      // DiTPipeline's unconditional label
  EXPECT_EQ(i.default_sampler, "ddim");
  EXPECT_TRUE(i.has_vae);
  EXPECT_EQ(i.image_size, 16);
}

TEST(DiTApi, EvalMatchesTheTransformer) {
  Session s(Model::load(converted_s8()));
  const fs::path d = fx("fwd0");  // t = [999, 0, 437.5], labels [207, 1000 (null), 1]
  NpyArray x = read_npy((d / "x.npy").string());
  const std::vector<float> t = read_npy((d / "t.npy").string()).as_f32();
  std::vector<int32_t> y;
  for (int64_t v : read_npy((d / "class_labels.npy").string()).as_i64()) y.push_back(int32_t(v));
  const std::vector<float> out = s.eval(x.as_f32().data(), int(x.shape[0]), int(x.shape[2]), int(x.shape[3]), t.data(),
                                        y.data());
  const std::vector<float> want = read_npy((d / "out.npy").string()).as_f32();
  ASSERT_EQ(out.size(), want.size());
  EXPECT_LE(test::rel_l2(out.data(), want.data(), want.size()), 1e-5);
}

// The API's sample() decodes every model with a VAE: DiTPipeline's images (guidance in the model file's
// [cond; uncond] order, the learned sigma dropped, DDIM, vae.decode).
TEST(DiTApi, SampleMatchesDiTPipeline) {
  Session s(Model::load(converted_s8()));
  for (const char* run : {"ddim10_g4_b2", "ddim8_g1_b1"}) {
    const fs::path d = fx(std::string("pipelines/") + run);
    const nlohmann::json meta = nlohmann::json::parse(std::ifstream(d / "meta.json"));
    SampleOptions o;
    o.sampler = "ddim";
    o.steps = meta["steps"].get<int>();
    o.seed = meta["seed"].get<uint64_t>();
    o.rng = Rng::Torch;
    o.batch = meta["batch"].get<int>();
    for (int64_t v : meta["class_labels"].get<std::vector<int64_t>>()) o.class_labels.push_back(int32_t(v));
    o.guidance_scale = meta["guidance_scale"].get<float>();
    const std::vector<float> img = s.sample(o);  // NHWC in [0, 1], as DiTPipeline(output_type="np")
    const std::vector<float> want = read_npy((d / "images.npy").string()).as_f32();
    ASSERT_EQ(img.size(), want.size()) << run;
    const double err = test::max_abs_diff(img.data(), want.data(), want.size());
    std::printf("[dit api] %s images max_abs %.3g\n", run, err);
    EXPECT_LE(err, 2e-5) << run;
  }
}
