// Image-to-image and inpainting through the C++ API's Session::sample (the one engine path: request validation,
// the CPU backend's VAE encode with the request's generator, the sampler, the VAE decode) against diffusers 0.27.2:
// the StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline runs (9-channel and legacy 4-channel UNets)
// and the pixel SDEdit runs of tests/fixtures/img2img -- the runs tests/sampler_img2img_test.cpp replays through
// run_sampler with the fixtures' own encodings and draws. Here nothing comes from the fixtures but the inputs
// (image, mask, prompt embeddings, seed, settings): the posterior and every draw are diffrt's. Also: the request
// checks (each refusal names its field) and the memory estimate counting the encoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "api/api_internal.h"
#include "api/diffrt.hpp"
#include "base/atomic_file.h"
#include "base/layout.h"
#include "base/npy.h"
#include "model/scheduler_config.h"
#include "tests/img2img_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;
using json = nlohmann::json;

namespace {

using namespace test::img2img;

// The pipeline's image after VaeImageProcessor's resize and before 2x - 1, NHWC in [0, 1]: image.npy when it is at
// the target size, else (x + 1) / 2 of the preprocessed NCHW image (PIL inputs, resized inputs; 2x - 1 maps it back
// to the same floats, to within one rounding). The CLI test feeds the PNGs themselves.
struct Image {
  std::vector<float> data;
  int n = 0, h = 0, w = 0, c = 0;
};
Image image_01(const std::string& run, const std::string& preprocessed) {
  const NpyArray pre = read_npy(fx(run + "/" + preprocessed));
  Image im;
  im.n = int(pre.shape[0]); im.c = int(pre.shape[1]); im.h = int(pre.shape[2]); im.w = int(pre.shape[3]);
  if (fs::exists(fx(run + "/image.npy"))) {
    const NpyArray a = read_npy(fx(run + "/image.npy"));
    if (a.shape.size() == 4 && a.shape[0] == im.n && a.shape[1] == im.h && a.shape[2] == im.w && a.shape[3] == im.c) {
      im.data = a.as_f32();
      return im;
    }
  }
  im.data = nchw_to_nhwc(pre.as_f32(), im.n, im.c, im.h, im.w);
  for (float& v : im.data) v = (v + 1.0f) * 0.5f;
  return im;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

struct RunResult {
  double latent_diff = 0, latent_max = 0, image_diff = 0;
};

// One SD img2img or inpaint run through Session::sample: latents and decoded images against diffusers'.
RunResult run_sd(const std::string& run, bool inpaint, const std::string& sampler_override = "") {
  SCOPED_TRACE(run);
  SdRun r(run, inpaint, sampler_override);
  const json& m = r.meta;
  auto model = model_of(m.at("model"));
  Session session(model);
  SampleOptions& o = r.options;
  const Image im = image_01(run, inpaint ? "init_image.npy" : "preprocessed.npy");
  o.init_image = {im.data.data(), im.n, im.h, im.w, im.c};
  RunResult res;
  o.output = Output::Latents;
  const std::vector<float> lat = session.sample(o);
  const std::vector<float> want = read_npy(fx(run + "/latents.npy")).as_f32();  // NCHW, as the API's latents
  EXPECT_EQ(lat.size(), want.size());
  if (lat.size() != want.size()) return res;
  res.latent_diff = test::max_abs_diff(lat.data(), want.data(), want.size());
  res.latent_max = max_abs(want);
  EXPECT_LE(res.latent_diff, 2e-5 * std::max(1.0, res.latent_max)) << "latents";
  o.output = Output::Images;
  const std::vector<float> img = session.sample(o);
  const std::vector<float> want_img = read_npy(fx(run + "/images.npy")).as_f32();  // NHWC [0, 1]
  EXPECT_EQ(img.size(), want_img.size());
  if (img.size() != want_img.size()) return res;
  res.image_diff = test::max_abs_diff(img.data(), want_img.data(), want_img.size());
  EXPECT_LE(res.image_diff, 2e-5) << "images";
  std::printf("[api img2img] %-52s %-30s latents max |diff| %.2e (max |x| %.1f), images max |diff| %.2e\n",
              run.c_str(), o.sampler.c_str(), res.latent_diff, res.latent_max, res.image_diff);
  return res;
}

}  // namespace

TEST(ApiImg2Img, StableDiffusionImg2ImgPipeline) {
  const json index = load_meta(".");
  int n = 0;
  for (const auto& [cfgname, runs] : index.at("img2img_runs").items())
    for (const json& run : runs) {
      // 16x22 pixels: 8x11 latents, which diffrt's UNet planner refuses (see sampler_img2img_test.cpp).
      if (run.get<std::string>() == "eulera_s1.0_g7.5_b1_pil17x23") continue;
      run_sd("img2img/" + cfgname + "/" + run.get<std::string>(), false);
      ++n;
    }
  EXPECT_EQ(n, 13);  // DDIM (eta 0 and 0.5), DPM++ 2M Karras, Euler a; strengths 0.3-1.0; batches and tiling
}

TEST(ApiImg2Img, StableDiffusionInpaintPipeline) {
  int n9 = 0, n4 = 0;
  for (const auto& e : fs::directory_iterator(fx("inpaint"))) {
    const std::string name = e.path().filename().string();
    run_sd("inpaint/" + name, true);
    ++(name.find("unet9") == 0 ? n9 : n4);
  }
  EXPECT_EQ(n9, 4);  // 9-channel UNet: mask and masked-image latents as extra inputs
  EXPECT_EQ(n4, 5);  // 4-channel UNet: the legacy blend
}

// The test must be able to fail: another sampler than diffusers ran gives other latents.
TEST(ApiImg2Img, WrongSamplerDiffers) {
  const std::string run = "img2img/sd1/ddim_s0.6_g7.5_b1";
  const json m = load_meta(run);
  auto model = model_of(m.at("model"));
  Session session(model);
  int len = 0, dim = 0;
  const std::vector<float> pos = prompt_rows(m.at("prompt_rows").at("prompt_embeds"), 1, &len, &dim);
  const std::vector<float> neg = prompt_rows(m.at("prompt_rows").at("negative_prompt_embeds"), 1, &len, &dim);
  const Image im = image_01(run, "preprocessed.npy");
  SampleOptions o;
  o.sampler = "euler";
  o.steps = 10; o.seed = 40; o.rng = Rng::Torch; o.guidance_scale = 7.5f; o.strength = 0.6;
  o.prompt_embeds = {pos.data(), 1, len, dim};
  o.negative_prompt_embeds = {neg.data(), 1, len, dim};
  o.init_image = {im.data.data(), im.n, im.h, im.w, im.c};
  o.output = Output::Latents;
  const std::vector<float> lat = session.sample(o);
  const std::vector<float> want = read_npy(fx(run + "/latents.npy")).as_f32();
  EXPECT_GT(test::max_abs_diff(lat.data(), want.data(), want.size()), 1e-2);
  o.sampler = "ddim";
  o.seed = 41;  // another generator: another posterior sample and noise
  const std::vector<float> lat2 = session.sample(o);
  EXPECT_GT(test::max_abs_diff(lat2.data(), want.data(), want.size()), 1e-2);
}

TEST(ApiImg2Img, PixelSdEdit) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(fx("sdedit"))) {
    const std::string run = "sdedit/" + e.path().filename().string();
    SCOPED_TRACE(run);
    const json m = load_meta(run);
    auto model = model_of(m.at("model"));
    Session session(model);
    const NpyArray a = read_npy(fx(run + "/image.npy"));  // NHWC [0, 1]
    const std::vector<float> image = a.as_f32();
    SampleOptions o;
    o.sampler = m.at("effective_scheduler_config").at("_class_name").get<std::string>();
    o.steps = m.at("steps");
    if (m.at("eta").is_number()) o.eta = m.at("eta").get<float>();
    o.seed = m.at("seed");
    o.rng = Rng::Torch;
    const int B = m.at("batch");
    o.batch = B;
    if (m.at("class_labels").is_array()) o.class_labels = m.at("class_labels").get<std::vector<int32_t>>();
    o.strength = m.at("strength").get<double>();
    o.init_image = {image.data(), int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(a.shape[3])};
    const std::vector<float> got = session.sample(o);
    const std::vector<float> want = read_npy(fx(run + "/images.npy")).as_f32();
    ASSERT_EQ(got.size(), want.size());
    const double d = test::max_abs_diff(got.data(), want.data(), want.size());
    // DDIM with clip_sample=True is ill-conditioned (DESIGN.md); images clamp: compared loosely, as the sampler test.
    EXPECT_LE(d, 1e-4) << "max |diff| " << d;
    std::printf("[api sdedit] %-44s images max |diff| %.2e\n", run.c_str(), d);
    ++n;
  }
  EXPECT_EQ(n, 4);
}


// Philox (the default RNG): sample i of an img2img / inpainting batch equals a batch-of-one run with
// first_sample_index = i (the posterior is drawn per output row), and different rows differ.
TEST(ApiImg2Img, PhiloxRowsAreBatchIndependent) {
  auto sd9 = model_of("tests/fixtures/img2img/sd1_inpaint_tiny/pipeline");
  auto sd = model_of("tests/fixtures/sd/sd1_tiny/pipeline");
  std::vector<float> emb(size_t(5) * 32), image(size_t(16) * 16 * 3), mask(size_t(16) * 16);
  for (size_t i = 0; i < emb.size(); ++i) emb[i] = std::sin(0.37f * float(i));
  for (size_t i = 0; i < image.size(); ++i) image[i] = 0.5f + 0.5f * std::sin(0.11f * float(i));
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = (i % 16) < 8 ? 1.0f : 0.0f;
  for (int inpaint = 0; inpaint < 2; ++inpaint)
    for (auto model : {sd, sd9}) {
      if (!inpaint && model == sd9) continue;
      SCOPED_TRACE(std::string(inpaint ? "inpaint " : "img2img ") + (model == sd9 ? "9-channel" : "4-channel"));
      Session s(model);
      SampleOptions o;
      o.prompt_embeds = {emb.data(), 1, 5, 32};
      o.guidance_scale = 1.0f;
      o.sampler = "euler-a";  // step noise too
      o.steps = 5;
      o.seed = 9;
      o.strength = 0.7;
      o.init_image = {image.data(), 1, 16, 16, 3};
      if (inpaint) o.mask = {mask.data(), 1, 16, 16};
      o.output = Output::Latents;
      o.batch = 3;
      const std::vector<float> all = s.sample(o);
      const size_t per = all.size() / 3;
      o.batch = 1;
      o.first_sample_index = 2;
      const std::vector<float> one = s.sample(o);
      ASSERT_EQ(one.size(), per);
      EXPECT_LE(test::max_abs_diff(all.data() + 2 * per, one.data(), per), 1e-5);
      EXPECT_GT(test::max_abs_diff(all.data(), all.data() + per, per), 1e-3);
    }
}

namespace {

// Runs o and returns the InvalidArgument message ("" if it ran or failed otherwise).
std::string refusal(Session& s, const SampleOptions& o) {
  try {
    (void)s.output_shape(o);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::InvalidArgument) return e.what();
    return std::string("other error: ") + e.what();
  }
  return "";
}

}  // namespace

TEST(ApiImg2Img, BadRequestsNameTheField) {
  auto sd = model_of("tests/fixtures/sd/sd1_tiny/pipeline");
  auto inpaint9 = model_of("tests/fixtures/img2img/sd1_inpaint_tiny/pipeline");
  Session s(sd), s9(inpaint9);
  std::vector<float> emb(size_t(5) * 32, 0.1f), image(size_t(16) * 16 * 3, 0.5f), mask(size_t(16) * 16, 1.0f);
  SampleOptions o;
  o.prompt_embeds = {emb.data(), 1, 5, 32};
  o.guidance_scale = 1.0f;
  o.steps = 4;
  o.init_image = {image.data(), 1, 16, 16, 3};
  EXPECT_EQ(refusal(s, o), "");
  EXPECT_EQ(s.describe(o).steps, 3);  // default strength 0.8: int(4 * 0.8) = 3 steps run
  o.mask = {mask.data(), 1, 16, 16};
  EXPECT_EQ(s.describe(o).steps, 4);  // inpainting's default strength 1.0
  o.mask = {};
  auto expect = [&](Session& ss, const SampleOptions& oo, const std::string& needle) {
    const std::string msg = refusal(ss, oo);
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: '" << msg << "'";
  };
  SampleOptions b = o;
  b.init_image.height = 8;
  EXPECT_EQ(s.output_shape(b).height, 8);  // the output size defaults to the image's
  b.height = 16;
  expect(s, b, "init_image is 8x16 but the output is 16x16");
  b = o;
  b.init_image.channels = 4;
  expect(s, b, "channels");
  b = o;
  b.height = 24;
  expect(s, b, "init_image is 16x16");
  b = o;
  b.strength = 0.0;
  expect(s, b, "strength");
  b.strength = 1.5;
  expect(s, b, "strength");
  b.strength = std::nan("");
  expect(s, b, "strength");
  b.strength = 0.1;  // int(4 * 0.1) = 0 steps
  expect(s, b, "strength");
  std::vector<float> bad_image = image;
  bad_image[7] = std::nanf("");
  b = o;
  b.init_image.data = bad_image.data();
  expect(s, b, "init_image[0, 0, 2, 1] (NHWC) is NaN");
  bad_image[7] = 1.5f;
  expect(s, b, "outside [0, 1]");
  b = o;
  b.batch = 3;
  std::vector<float> emb3(size_t(3) * 5 * 32, 0.1f), image2(image.size() * 2, 0.5f);
  b.prompt_embeds = {emb3.data(), 3, 5, 32};
  b.init_image = {image2.data(), 2, 16, 16, 3};
  expect(s, b, "init_image.batch");
  b = o;
  b.init_image = {};
  b.mask = {mask.data(), 1, 16, 16};
  expect(s, b, "mask given without init_image");
  b.mask = {};
  b.strength = 0.5;
  expect(s, b, "strength given without init_image");
  b = o;
  b.mask = {mask.data(), 1, 8, 8};
  expect(s, b, "mask is 8x8");
  std::vector<float> bad_mask = mask;
  bad_mask[3] = -0.25f;
  b.mask = {bad_mask.data(), 1, 16, 16};
  expect(s, b, "mask[0, 0, 3]");
  // The 9-channel inpainting UNet needs a mask (and an image).
  expect(s9, o, "mask: this is an inpainting UNet");
  b = o;
  b.init_image = {};
  expect(s9, b, "inpainting UNet");
  b = o;
  b.mask = {mask.data(), 1, 16, 16};
  EXPECT_EQ(refusal(s9, b), "");
}

TEST(ApiImg2Img, ModelWithoutEncoderOrPixelChannels) {
  // A pixel model takes its own channels; a latent model without a VAE encoder refuses the image.
  auto digits = model_of("models/digits");
  Session s(digits);
  const ModelInfo& info = digits->info();
  std::vector<float> image(size_t(info.image_size) * info.image_size * 3, 0.5f);
  SampleOptions o;
  o.class_labels = {3};
  o.steps = 4;
  o.init_image = {image.data(), 1, info.image_size, info.image_size, 3};
  const std::string msg = refusal(s, o);
  EXPECT_NE(msg.find("init_image has 3 channels; this model takes " + std::to_string(info.in_channels)), std::string::npos) << msg;
  o.init_image.channels = info.in_channels;
  EXPECT_EQ(refusal(s, o), "");
}

TEST(ApiImg2Img, MemoryEstimateCountsTheEncoder) {
  auto sd = model_of("tests/fixtures/sd/sd1_tiny/pipeline");
  Session s(sd);
  std::vector<float> emb(size_t(5) * 32, 0.1f), image(size_t(4) * 64 * 64 * 3, 0.5f);
  SampleOptions o;
  o.prompt_embeds = {emb.data(), 1, 5, 32};
  o.guidance_scale = 1.0f;
  o.steps = 4;
  o.batch = 4;
  o.height = o.width = 64;
  const uint64_t t2i = s.memory_estimate(o);
  o.init_image = {image.data(), 4, 64, 64, 3};
  const uint64_t i2i = s.memory_estimate(o);
  // At least the images, the encoder's first activation (4 x 64 x 64 x its first width) and the latents kept.
  EXPECT_GT(i2i, t2i + uint64_t(4) * 64 * 64 * 3 * 4);
  // The CUDA estimate (computed without a device) counts the encoder's executor too: a phase of its own (the
  // library workspaces dominate every phase of this tiny model), plus the image inputs kept through the loop.
  const ModelFile& mf = ModelAccess::file(*sd);
  const uint64_t cuda_i2i = engine::estimate_cuda_bytes(mf, api::prepare(*sd, o).job);
  SampleOptions t = o;
  t.init_image = {};
  const uint64_t cuda_t2i = engine::estimate_cuda_bytes(mf, api::prepare(*sd, t).job);
  EXPECT_GE(cuda_i2i, cuda_t2i);
  EXPECT_GE(cuda_i2i, uint64_t(4) * 64 * 64 * 32 * 4);  // at least the encoder's first activation in fp32
}

// The C API's 0.4 fields: the digits SDEdit run and an SD img2img run against diffusers, and bad inputs.
#include "api/diffrt.h"

namespace {

std::string c_model_path(const std::string& dir) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(dir);
  if (it != cache.end()) return it->second;
  ConvertOptions opt;
  opt.input = test::source_path(dir);
  opt.output = test::temp_dir("api_i2i_c") + "/m.drt";
  convert_diffusers(opt);
  return cache.emplace(dir, opt.output).first->second;
}

}  // namespace

TEST(ApiImg2ImgC, SdEditAndImg2ImgMatchDiffusers) {
  // Digits SDEdit (pixel model, class labels).
  {
    const std::string run = "sdedit/digits_ddim20_eta0_s0.6_label0";
    const json m = load_meta(run);
    diffrt_model* model = nullptr;
    ASSERT_EQ(diffrt_model_load(c_model_path(m.at("model")).c_str(), &model), DIFFRT_OK) << diffrt_last_error();
    diffrt_session* s = nullptr;
    ASSERT_EQ(diffrt_session_create(model, nullptr, &s), DIFFRT_OK) << diffrt_last_error();
    const NpyArray a = read_npy(fx(run + "/image.npy"));
    const std::vector<float> image = a.as_f32();
    const std::vector<int32_t> labels = m.at("class_labels").get<std::vector<int32_t>>();
    diffrt_sample_params p;
    diffrt_params_init(&p);
    p.sampler_name = "ddim";
    p.steps = m.at("steps");
    p.seed = m.at("seed");
    p.rng = DIFFRT_RNG_TORCH;
    p.batch = int(labels.size());
    p.class_labels = labels.data();
    p.num_class_labels = labels.size();
    p.init_image = image.data();
    p.init_image_batch = int(a.shape[0]);
    p.init_image_height = int(a.shape[1]);
    p.init_image_width = int(a.shape[2]);
    p.init_image_channels = int(a.shape[3]);
    p.strength = m.at("strength").get<double>();
    const std::vector<float> want = read_npy(fx(run + "/images.npy")).as_f32();
    std::vector<float> out(want.size());
    size_t written = 0;
    ASSERT_EQ(diffrt_sample(s, &p, out.data(), out.size(), &written), DIFFRT_OK) << diffrt_last_error();
    EXPECT_EQ(written, want.size());
    const double d = test::max_abs_diff(out.data(), want.data(), want.size());
    EXPECT_LE(d, 1e-4);
    std::printf("[c api sdedit] %s images max |diff| %.2e\n", run.c_str(), d);

    // Bad inputs: each names its field, writes nothing, and the session serves the next call.
    auto refused = [&](diffrt_sample_params q, const char* needle) {
      std::vector<float> o2(want.size(), -7.0f);
      const diffrt_status st = diffrt_sample(s, &q, o2.data(), o2.size(), nullptr);
      EXPECT_EQ(st, DIFFRT_E_INVALID_ARGUMENT) << needle;
      EXPECT_NE(std::string(diffrt_last_error()).find(needle), std::string::npos)
          << "expected '" << needle << "' in: " << diffrt_last_error();
      EXPECT_EQ(o2[0], -7.0f);
    };
    diffrt_sample_params q = p;
    q.strength = -0.5;
    refused(q, "strength");
    q.strength = 1.5;
    refused(q, "strength");
    q = p;
    q.init_image = nullptr;
    refused(q, "init_image is NULL");
    q = p;
    q.init_image_height = 8;
    q.height = q.width = 16;
    refused(q, "init_image is 8x16");
    q = p;
    q.init_image_channels = 3;
    refused(q, "channels");
    std::vector<float> mask(size_t(16) * 16, 1.0f);
    q = p;
    q.init_image = nullptr;
    q.init_image_batch = q.init_image_height = q.init_image_width = q.init_image_channels = 0;
    q.strength = 0;
    q.mask = mask.data();
    q.mask_batch = 1; q.mask_height = 16; q.mask_width = 16;
    refused(q, "mask given without");
    q = p;
    q.mask = mask.data();
    q.mask_batch = 1; q.mask_height = 8; q.mask_width = 8;
    refused(q, "mask is 8x8");
    q = p;
    q.init_image = nullptr;
    q.init_image_batch = q.init_image_height = q.init_image_width = q.init_image_channels = 0;
    refused(q, "strength given without");
    ASSERT_EQ(diffrt_sample(s, &p, out.data(), out.size(), &written), DIFFRT_OK) << diffrt_last_error();
    EXPECT_LE(test::max_abs_diff(out.data(), want.data(), want.size()), 1e-4);
    diffrt_session_free(s);
    diffrt_model_free(model);
  }
  // SD img2img, Euler a (step draws continue the generator after the posterior and the noise).
  {
    const std::string run = "img2img/sd1/eulera_s0.6_g7.5_b1";
    const json m = load_meta(run);
    diffrt_model* model = nullptr;
    ASSERT_EQ(diffrt_model_load(c_model_path(m.at("model")).c_str(), &model), DIFFRT_OK) << diffrt_last_error();
    diffrt_session* s = nullptr;
    ASSERT_EQ(diffrt_session_create(model, nullptr, &s), DIFFRT_OK) << diffrt_last_error();
    int len = 0, dim = 0;
    const std::vector<float> pos = prompt_rows(m.at("prompt_rows").at("prompt_embeds"), 1, &len, &dim);
    const std::vector<float> neg = prompt_rows(m.at("prompt_rows").at("negative_prompt_embeds"), 1, &len, &dim);
    const Image im = image_01(run, "preprocessed.npy");
    diffrt_sample_params p;
    diffrt_params_init(&p);
    p.sampler = DIFFRT_SAMPLER_EULER_A;
    p.steps = m.at("steps");
    p.seed = m.at("seed");
    p.rng = DIFFRT_RNG_TORCH;
    p.guidance_scale = m.at("guidance_scale").get<float>();
    p.prompt_embeds = {pos.data(), 1, len, dim};
    p.negative_prompt_embeds = {neg.data(), 1, len, dim};
    p.output = DIFFRT_OUTPUT_LATENTS;
    p.init_image = im.data.data();
    p.init_image_batch = im.n; p.init_image_height = im.h; p.init_image_width = im.w; p.init_image_channels = im.c;
    p.strength = m.at("strength").get<double>();
    const std::vector<float> want = read_npy(fx(run + "/latents.npy")).as_f32();
    std::vector<float> out(want.size());
    ASSERT_EQ(diffrt_sample(s, &p, out.data(), out.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
    const double d = test::max_abs_diff(out.data(), want.data(), want.size());
    EXPECT_LE(d, 2e-5 * std::max(1.0, max_abs(want)));
    std::printf("[c api img2img] %s latents max |diff| %.2e\n", run.c_str(), d);
    diffrt_session_free(s);
    diffrt_model_free(model);
  }
}
