// C API with a text-conditioned latent model (tests/fixtures/sd/sd1_tiny/pipeline: UNet2DConditionModel with
// cross_attention_dim 32, latents 4 x 8 x 8, AutoencoderKL decoder with factor 2, converted once into a temp
// dir) on the CPU backend:
//   * model info reports the text conditioning, the VAE and the image size;
//   * StableDiffusionPipeline parity: every fixture run (pipelines/*: DDIM eta 0 / 0.5, DDPM, guidance 1 / 5 /
//     7.5, batch 1 and 2), given the same prompt embeddings, scheduler config and seed with the torch RNG,
//     gives diffusers' images (max abs <= 2e-5) and, with DIFFRT_OUTPUT_LATENTS, its latents (NCHW);
//   * one prompt embedding broadcasts over the batch exactly like repeating it;
//   * the session memory limit refuses a text request with the bytes it needs, then serves a smaller one;
//   * bad inputs, one test per case (missing embeddings, wrong dim, negative shape mismatch, missing negative
//     with guidance, NULL data, zero length, batch mismatch, NaN, sizes, class labels, eval).
// Embeddings given to a model that is not text-conditioned: tests/api_test.cpp. CUDA: tests/gpu/api_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/diffrt.h"
#include "base/npy.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;

namespace {

bool msg_has(const std::string& needle) { return std::string(diffrt_last_error()).find(needle) != std::string::npos; }
#define EXPECT_STATUS(call, code, needle)                                       \
  do {                                                                          \
    EXPECT_EQ((call), (code)) << diffrt_last_error();                           \
    EXPECT_TRUE(msg_has(needle)) << "message: '" << diffrt_last_error() << "'"; \
  } while (0)

fs::path fixture() { return diffrt::test::source_path("tests/fixtures/sd/sd1_tiny"); }

std::vector<fs::path> pipeline_runs() {
  std::vector<fs::path> dirs;
  for (const auto& r : fs::directory_iterator(fixture() / "pipelines")) dirs.push_back(r.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

struct Embeds {
  std::vector<float> data;
  int batch = 0, len = 0, dim = 0;
  diffrt_text_embeds c() const { return diffrt_text_embeds{data.data(), batch, len, dim}; }
};
Embeds load_embeds(const fs::path& p) {
  diffrt::NpyArray a = diffrt::read_npy(p.string());
  Embeds e;
  e.batch = int(a.shape[0]);
  e.len = int(a.shape[1]);
  e.dim = int(a.shape[2]);
  e.data = a.as_f32();
  return e;
}
Embeds random_embeds(int batch, int len, int dim, uint32_t seed) {
  Embeds e;
  e.batch = batch;
  e.len = len;
  e.dim = dim;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  e.data.resize(size_t(batch) * size_t(len) * size_t(dim));
  for (float& v : e.data) v = normal(rng);
  return e;
}

// One fixture run as C params (the strings and embeddings it points at live here).
struct FixtureRun {
  nlohmann::json meta;
  std::string scheduler;
  Embeds pos, neg;
  diffrt_sample_params p;
};
FixtureRun load_run(const fs::path& d) {
  FixtureRun r;
  r.meta = nlohmann::json::parse(std::ifstream(d / "meta.json"));
  r.scheduler = r.meta["effective_scheduler_config"].dump();
  diffrt_params_init(&r.p);
  r.p.sampler = r.meta["sampler"] == "ddim" ? DIFFRT_SAMPLER_DDIM : DIFFRT_SAMPLER_DDPM;
  r.p.steps = r.meta["steps"].get<int>();
  r.p.eta = r.meta["eta"].get<float>();
  r.p.seed = r.meta["seed"].get<uint64_t>();
  r.p.rng = DIFFRT_RNG_TORCH;
  r.p.batch = r.meta["batch"].get<int>();
  r.p.height = r.meta["height"].get<int>();
  r.p.width = r.meta["width"].get<int>();
  r.p.guidance_scale = r.meta["guidance_scale"].get<float>();
  r.p.scheduler_config_json = r.scheduler.c_str();
  r.pos = load_embeds(d / "prompt_embeds.npy");
  r.p.prompt_embeds = r.pos.c();
  if (r.p.guidance_scale > 1.0f) {
    r.neg = load_embeds(d / "negative_prompt_embeds.npy");
    r.p.negative_prompt_embeds = r.neg.c();
  }
  return r;
}

class ApiText : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = diffrt::test::temp_dir("api_text");
    diffrt::ConvertOptions opt;
    opt.input = (fixture() / "pipeline").string();
    opt.output = dir + "/sd.drt";
    diffrt::convert_diffusers(opt);
    ASSERT_EQ(diffrt_model_load(opt.output.c_str(), &model_), DIFFRT_OK) << diffrt_last_error();
    // A pixel-space model for the refusal of embeddings (its conversion is quick).
  }
  static void TearDownTestSuite() {
    diffrt_model_free(model_);
    model_ = nullptr;
  }

  void SetUp() override {
    s_ = new_session(0);
    pos_ = random_embeds(1, 77, 32, 1);
    neg_ = random_embeds(1, 77, 32, 2);
    diffrt_params_init(&p_);
    p_.steps = 3;
    p_.seed = 5;
    p_.prompt_embeds = pos_.c();
    p_.negative_prompt_embeds = neg_.c();
    p_.guidance_scale = 7.5f;
    buf_.assign(16 * 16 * 3, -1.0f);
  }
  void TearDown() override { EXPECT_EQ(diffrt_session_free(s_), DIFFRT_OK); }

  static diffrt_session* new_session(uint64_t limit) {
    diffrt_session_options so;
    diffrt_session_options_init(&so);
    so.threads = 1;
    so.memory_limit_bytes = limit;
    diffrt_session* s = nullptr;
    EXPECT_EQ(diffrt_session_create(model_, &so, &s), DIFFRT_OK) << diffrt_last_error();
    return s;
  }
  diffrt_status sample() { return diffrt_sample(s_, &p_, buf_.data(), buf_.size(), &written_); }
  // Puts random embeddings of [batch, len, dim] (seed 3) into `slot` (a member of p_): sampling must fail with
  // DIFFRT_E_INVALID_ARGUMENT and a message that contains `needle`.
  void expect_bad_embeds(diffrt_text_embeds& slot, int batch, int len, int dim, const char* needle) {
    Embeds e = random_embeds(batch, len, dim, 3);
    slot = e.c();
    EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, needle);
  }

  static inline diffrt_model* model_ = nullptr;
  diffrt_session* s_ = nullptr;
  diffrt_sample_params p_{};
  Embeds pos_, neg_;
  std::vector<float> buf_;
  size_t written_ = 0;
};

TEST_F(ApiText, ModelInfoReportsTextConditioningAndVae) {
  diffrt_model_info info;
  diffrt_model_info_init(&info);
  ASSERT_EQ(diffrt_model_get_info(model_, &info), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(info.in_channels, 4);
  EXPECT_EQ(info.out_channels, 4);
  EXPECT_EQ(info.sample_size, 8);
  EXPECT_EQ(info.context_dim, 32);
  EXPECT_EQ(info.has_vae, 1);
  EXPECT_EQ(info.vae_scale_factor, 2);
  EXPECT_FLOAT_EQ(info.vae_scaling_factor, 0.18215f);
  EXPECT_EQ(info.image_channels, 3);
  EXPECT_EQ(info.image_size, 16);
  EXPECT_EQ(info.num_classes, 0);
  EXPECT_EQ(info.default_sampler, DIFFRT_SAMPLER_PNDM);  // the pipeline's own PNDMScheduler, as diffusers
  EXPECT_EQ(info.has_vae_encoder, 1);  // converted with the VAE's encoder: init images work
  EXPECT_EQ(info.encoder_image_channels, 3);
}

TEST_F(ApiText, PipelinesMatchStableDiffusionPipeline) {
  int runs = 0;
  for (const fs::path& d : pipeline_runs()) {
    FixtureRun r = load_run(d);
    const std::vector<float> want = diffrt::read_npy((d / "images.npy").string()).as_f32();
    std::vector<float> img(want.size(), -1.0f);
    size_t written = 0, n = 0;
    ASSERT_EQ(diffrt_sample_output_size(s_, &r.p, &n), DIFFRT_OK) << diffrt_last_error();
    ASSERT_EQ(n, want.size()) << d;
    ASSERT_EQ(diffrt_sample(s_, &r.p, img.data(), img.size(), &written), DIFFRT_OK) << d << ": " << diffrt_last_error();
    EXPECT_EQ(written, want.size());
    const double err = diffrt::test::max_abs_diff(img.data(), want.data(), want.size());

    const std::vector<float> want_lat = diffrt::read_npy((d / "latents.npy").string()).as_f32();
    r.p.output = DIFFRT_OUTPUT_LATENTS;
    ASSERT_EQ(diffrt_sample_output_size(s_, &r.p, &n), DIFFRT_OK) << diffrt_last_error();
    ASSERT_EQ(n, want_lat.size()) << d;
    std::vector<float> lat(want_lat.size());
    ASSERT_EQ(diffrt_sample(s_, &r.p, lat.data(), lat.size(), &written), DIFFRT_OK) << d << ": " << diffrt_last_error();
    double lat_max = 0;
    for (float v : want_lat) lat_max = std::max(lat_max, double(std::fabs(v)));
    const double lat_err = diffrt::test::max_abs_diff(lat.data(), want_lat.data(), want_lat.size()) / lat_max;
    std::printf("[api sd] %-18s images max_abs %.3g  latents rel %.3g\n", d.filename().c_str(), err, lat_err);
    EXPECT_LE(err, 2e-5) << d;
    EXPECT_LE(lat_err, 1e-5) << d;
    ++runs;
  }
  EXPECT_GE(runs, 4);
}

TEST_F(ApiText, OnePromptBroadcastsOverTheBatch) {
  p_.batch = 2;
  std::vector<float> a(2 * 16 * 16 * 3), b(a.size());
  ASSERT_EQ(diffrt_sample(s_, &p_, a.data(), a.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  Embeds pos2 = pos_, neg2 = neg_;
  pos2.batch = neg2.batch = 2;
  pos2.data.insert(pos2.data.end(), pos_.data.begin(), pos_.data.end());
  neg2.data.insert(neg2.data.end(), neg_.data.begin(), neg_.data.end());
  p_.prompt_embeds = pos2.c();
  p_.negative_prompt_embeds = neg2.c();
  ASSERT_EQ(diffrt_sample(s_, &p_, b.data(), b.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(a, b);
}

TEST_F(ApiText, GuidanceOffIgnoresNegativeEmbeds) {
  p_.guidance_scale = 1.0f;
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  const std::vector<float> with = buf_;
  p_.negative_prompt_embeds = diffrt_text_embeds{nullptr, 0, 0, 0};
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(with, buf_);
  for (float v : buf_) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
}

TEST_F(ApiText, MemoryLimitRefusesWithTheAmountThenServesASmallerRequest) {
  uint64_t need1 = 0, need2 = 0;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &need1), DIFFRT_OK) << diffrt_last_error();
  p_.batch = 2;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &need2), DIFFRT_OK) << diffrt_last_error();
  ASSERT_LT(need1, need2);
  diffrt_session* s = new_session((need1 + need2) / 2);
  std::vector<float> big(2 * 16 * 16 * 3);
  EXPECT_STATUS(diffrt_sample(s, &p_, big.data(), big.size(), nullptr), DIFFRT_E_OUT_OF_MEMORY,
                std::to_string(need2) + " bytes");
  p_.batch = 1;
  std::vector<float> got(16 * 16 * 3);
  ASSERT_EQ(diffrt_sample(s, &p_, got.data(), got.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(got, buf_);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}

TEST_F(ApiText, OutputSizes) {
  size_t n = 0;
  p_.batch = 3;
  p_.height = 32;
  p_.width = 16;
  ASSERT_EQ(diffrt_sample_output_size(s_, &p_, &n), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(n, size_t(3 * 32 * 16 * 3));
  p_.output = DIFFRT_OUTPUT_LATENTS;
  ASSERT_EQ(diffrt_sample_output_size(s_, &p_, &n), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(n, size_t(3 * 4 * 16 * 8));
}

// ---- bad inputs: one test per case -----------------------------------------------------------

TEST_F(ApiText, MissingPromptEmbeds) {
  p_.prompt_embeds = diffrt_text_embeds{nullptr, 0, 0, 0};
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "text-conditioned: give prompt_embeds [batch, len, 32]");
}
TEST_F(ApiText, WrongEmbeddingDim) {
  expect_bad_embeds(p_.prompt_embeds, 1, 77, 16, "prompt_embeds.dim = 16, but the model's context_dim");
}
TEST_F(ApiText, NegativeShapeMismatch) {
  expect_bad_embeds(p_.negative_prompt_embeds, 1, 76, 32,
                    "negative_prompt_embeds [1, 76, 32] must have the shape of prompt_embeds [1, 77, 32]");
}
TEST_F(ApiText, NegativeWrongDim) {
  expect_bad_embeds(p_.negative_prompt_embeds, 1, 77, 31, "negative_prompt_embeds.dim = 31");
}
TEST_F(ApiText, GuidanceWithoutNegativeEmbeds) {
  p_.negative_prompt_embeds = diffrt_text_embeds{nullptr, 0, 0, 0};
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "needs negative_prompt_embeds");
}
TEST_F(ApiText, EmbedsDataNullWithShape) {
  p_.prompt_embeds.data = nullptr;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->prompt_embeds.data is NULL but its shape is [1, 77, 32]");
}
TEST_F(ApiText, EmbedsZeroLength) {
  p_.prompt_embeds.len = 0;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "batch, len and dim must be >= 1");
}
TEST_F(ApiText, EmbedsNegativeBatch) {
  p_.negative_prompt_embeds.batch = -1;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->negative_prompt_embeds shape [-1, 77, 32]");
}
TEST_F(ApiText, EmbedsTooLong) {
  p_.prompt_embeds.len = p_.negative_prompt_embeds.len = 65537;  // the check comes before any read
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "exceeds 65536 tokens");
}
TEST_F(ApiText, EmbedsBatchNeitherOneNorBatch) {
  Embeds e = random_embeds(3, 77, 32, 3), n = random_embeds(3, 77, 32, 4);
  p_.prompt_embeds = e.c();
  p_.negative_prompt_embeds = n.c();
  p_.batch = 2;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "prompt_embeds.batch = 3: give 1 (used for every image) or batch = 2");
}
TEST_F(ApiText, EmbedsWithNaN) {
  pos_.data[77 * 32 - 1] = std::nanf("");
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "prompt_embeds contains NaN or infinity at [0, 76, 31]");
}
TEST_F(ApiText, NegativeEmbedsWithInfinity) {
  neg_.data[5] = INFINITY;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "negative_prompt_embeds contains NaN or infinity at [0, 0, 5]");
}
TEST_F(ApiText, SizeNotMultipleOfVaeTimesUNetFactor) {
  p_.height = 18;  // latents 9: not a multiple of the UNet's 2
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "height = 18 is not a multiple of the model's downsample factor 4 (the VAE's 2 x the UNet's 2)");
}
TEST_F(ApiText, ClassLabelsOnTextModel) {
  const int32_t l = 1;
  p_.class_labels = &l;
  p_.num_class_labels = 1;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "not class-conditional");
}
TEST_F(ApiText, EvalIsUnsupported) {
  std::vector<float> x(4 * 8 * 8), y(4 * 8 * 8);
  const float t = 10.0f;
  EXPECT_STATUS(diffrt_eval(s_, x.data(), 1, 8, 8, &t, nullptr, y.data(), y.size(), nullptr), DIFFRT_E_UNSUPPORTED,
                "text-conditioned");
}
TEST_F(ApiText, CapacityForImagesNotLatents) {
  std::vector<float> small(4 * 8 * 8);  // latents' size, but images were asked for
  EXPECT_STATUS(diffrt_sample(s_, &p_, small.data(), small.size(), &written_), DIFFRT_E_INVALID_ARGUMENT, "too small");
  EXPECT_EQ(written_, size_t(16 * 16 * 3));
}

TEST_F(ApiText, SessionSurvivesFailedRequests) {
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  const std::vector<float> ref = buf_;
  p_.prompt_embeds.dim = 8;
  EXPECT_NE(sample(), DIFFRT_OK);
  p_.prompt_embeds.dim = 32;
  p_.height = 8192;
  p_.width = 8192;
  p_.batch = 4096;
  p_.guidance_scale = 1.0f;
  std::vector<float> tiny(1);
  EXPECT_NE(diffrt_sample(s_, &p_, tiny.data(), tiny.size(), nullptr), DIFFRT_OK);
  p_.height = p_.width = 0;
  p_.batch = 1;
  p_.guidance_scale = 7.5f;
  std::fill(buf_.begin(), buf_.end(), -1.0f);
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(buf_, ref);
}

}  // namespace
