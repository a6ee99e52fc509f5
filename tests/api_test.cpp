// C API (api/diffrt.h) tests: every entry point's argument validation (one test per case,
// each checking the status code and that diffrt_last_error names the problem), version and
// status names, struct versioning (0.1-sized structs still accepted, only their fields touched),
// device counts, model queries, memory estimates and the session memory limit (out of memory with
// the bytes needed, then the next smaller request runs), eval parity with the diffusers fixture,
// cancellation (the session then serves a normal request exactly as a fresh session would),
// callback re-entrancy, and a session surviving failed requests. Model:
// tests/fixtures/models/class_cond (1 channel, 16x16, 11 classes with null class 10), converted
// once into a temp dir. Text-conditioned models: tests/api_text_test.cpp; CUDA: tests/gpu/api_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "api/diffrt.h"
#include "api/diffrt.hpp"
#include "base/npy.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace {

using diffrt::test::source_path;

bool msg_has(const char* needle) { return std::string(diffrt_last_error()).find(needle) != std::string::npos; }
#define EXPECT_STATUS(call, code, needle)                                            \
  do {                                                                               \
    EXPECT_EQ((call), (code)) << diffrt_last_error();                                \
    EXPECT_TRUE(msg_has(needle)) << "message: '" << diffrt_last_error() << "'";      \
  } while (0)

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = diffrt::test::temp_dir("api");
    path_ = dir_ + "/cc.drt";
    diffrt::ConvertOptions opt;
    opt.input = source_path("tests/fixtures/models/class_cond");
    opt.output = path_;
    diffrt::convert_diffusers(opt);
    ASSERT_EQ(diffrt_model_load(path_.c_str(), &model_), DIFFRT_OK) << diffrt_last_error();
  }
  static void TearDownTestSuite() { diffrt_model_free(model_); model_ = nullptr; }

  void SetUp() override {
    diffrt_session_options so;
    diffrt_session_options_init(&so);
    so.threads = 1;  // bit-exact comparisons between sessions
    ASSERT_EQ(diffrt_session_create(model_, &so, &s_), DIFFRT_OK) << diffrt_last_error();
    diffrt_params_init(&p_);
    p_.steps = 4;
    p_.seed = 11;
    p_.batch = 2;
    p_.class_labels = labels_;
    p_.num_class_labels = 2;
    buf_.assign(2 * 16 * 16, -1.0f);
  }
  void TearDown() override { EXPECT_EQ(diffrt_session_free(s_), DIFFRT_OK); }

  diffrt_status sample() { return diffrt_sample(s_, &p_, buf_.data(), buf_.size(), &written_); }

  static inline std::string dir_, path_;
  static inline diffrt_model* model_ = nullptr;
  diffrt_session* s_ = nullptr;
  diffrt_sample_params p_{};
  const int32_t labels_[2] = {3, 7};
  std::vector<float> buf_;
  size_t written_ = 0;
};

// ---- version, status names, messages ---------------------------------------------------------

TEST(ApiVersion, MatchesHeaderAndString) {
  int ma = -1, mi = -1, pa = -1;
  diffrt_version(&ma, &mi, &pa);
  EXPECT_EQ(ma, DIFFRT_VERSION_MAJOR);
  EXPECT_EQ(mi, DIFFRT_VERSION_MINOR);
  EXPECT_EQ(pa, DIFFRT_VERSION_PATCH);
  EXPECT_EQ(std::string(diffrt_version_string()),
            std::to_string(ma) + "." + std::to_string(mi) + "." + std::to_string(pa));
  diffrt_version(nullptr, nullptr, nullptr);  // NULLs are allowed
}

TEST(ApiVersion, StatusNames) {
  EXPECT_STREQ(diffrt_status_name(DIFFRT_OK), "DIFFRT_OK");
  EXPECT_STREQ(diffrt_status_name(DIFFRT_E_CANCELLED), "DIFFRT_E_CANCELLED");
  EXPECT_STREQ(diffrt_status_name(diffrt_status(99)), "unknown status");
}

TEST_F(Api, LastErrorClearedBySuccessAndPerThread) {
  EXPECT_EQ(diffrt_session_release_cache(nullptr), DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_TRUE(msg_has("session is NULL"));
  EXPECT_EQ(diffrt_session_release_cache(s_), DIFFRT_OK);
  EXPECT_STREQ(diffrt_last_error(), "");
}

// ---- models ----------------------------------------------------------------------------------

TEST_F(Api, ModelLoadNullPath) {
  diffrt_model* m = reinterpret_cast<diffrt_model*>(0x1);
  EXPECT_STATUS(diffrt_model_load(nullptr, &m), DIFFRT_E_INVALID_ARGUMENT, "path is NULL");
  EXPECT_EQ(m, nullptr);
}
TEST_F(Api, ModelLoadNullOut) { EXPECT_STATUS(diffrt_model_load(path_.c_str(), nullptr), DIFFRT_E_INVALID_ARGUMENT, "out is NULL"); }
TEST_F(Api, ModelLoadMissingFile) {
  diffrt_model* m = nullptr;
  EXPECT_STATUS(diffrt_model_load((dir_ + "/nope.drt").c_str(), &m), DIFFRT_E_IO, "nope.drt");
}
TEST_F(Api, ModelLoadGarbageFile) {
  diffrt_model* m = nullptr;
  const std::string bad = source_path("tests/fixtures/models/class_cond/config.json");
  EXPECT_EQ(diffrt_model_load(bad.c_str(), &m), DIFFRT_E_INVALID_MODEL) << diffrt_last_error();
  EXPECT_EQ(m, nullptr);
}
TEST_F(Api, ModelFreeNullIsNoop) { diffrt_model_free(nullptr); }

TEST_F(Api, ModelInfo) {
  diffrt_model_info info;
  diffrt_model_info_init(&info);
  ASSERT_EQ(diffrt_model_get_info(model_, &info), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(info.in_channels, 1);
  EXPECT_EQ(info.out_channels, 1);
  EXPECT_EQ(info.sample_size, 16);
  EXPECT_EQ(info.num_classes, 11);
  EXPECT_EQ(info.null_class, 10);
  EXPECT_EQ(info.downsample_factor, 2);
  EXPECT_EQ(info.num_train_timesteps, 1000);
  EXPECT_EQ(info.context_dim, 0);
  EXPECT_EQ(info.has_vae, 0);
  EXPECT_EQ(info.vae_scale_factor, 1);
  EXPECT_EQ(info.vae_scaling_factor, 0.0f);
  EXPECT_EQ(info.image_channels, 1);
  EXPECT_EQ(info.image_size, 16);
  EXPECT_EQ(info.default_sampler, DIFFRT_SAMPLER_DDPM);
}
// A caller compiled against the 0.1 header: struct_size 40, fields up to num_train_timesteps. The
// library fills those and leaves every byte after them (the caller's padding) alone.
TEST_F(Api, ModelInfoVersion01StructIsFilledUpToItsFields) {
  diffrt_model_info info;
  std::memset(static_cast<void*>(&info), 0x5a, sizeof(info));
  info.struct_size = 40;
  ASSERT_EQ(diffrt_model_get_info(model_, &info), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(info.num_classes, 11);
  EXPECT_EQ(info.num_train_timesteps, 1000);
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&info);
  for (size_t i = 36; i < sizeof(info); ++i) ASSERT_EQ(bytes[i], 0x5a) << "byte " << i << " was written";
}
TEST_F(Api, ModelInfoStructSizeBetweenVersionsRefused) {
  diffrt_model_info info;
  diffrt_model_info_init(&info);
  info.struct_size = 48;
  EXPECT_STATUS(diffrt_model_get_info(model_, &info), DIFFRT_E_INVALID_ARGUMENT, "struct_size = 48");
}
TEST_F(Api, ModelInfoNullModel) {
  diffrt_model_info info;
  diffrt_model_info_init(&info);
  EXPECT_STATUS(diffrt_model_get_info(nullptr, &info), DIFFRT_E_INVALID_ARGUMENT, "model is NULL");
}
TEST_F(Api, ModelInfoNullInfo) { EXPECT_STATUS(diffrt_model_get_info(model_, nullptr), DIFFRT_E_INVALID_ARGUMENT, "info is NULL"); }
TEST_F(Api, ModelInfoWrongStructSize) {
  diffrt_model_info info;
  diffrt_model_info_init(&info);
  info.struct_size = 3;
  EXPECT_STATUS(diffrt_model_get_info(model_, &info), DIFFRT_E_INVALID_ARGUMENT, "struct_size");
}

// ---- sessions --------------------------------------------------------------------------------

TEST_F(Api, SessionCreateNullModel) {
  diffrt_session* s = reinterpret_cast<diffrt_session*>(0x1);
  EXPECT_STATUS(diffrt_session_create(nullptr, nullptr, &s), DIFFRT_E_INVALID_ARGUMENT, "model is NULL");
  EXPECT_EQ(s, nullptr);
}
TEST_F(Api, SessionCreateNullOut) { EXPECT_STATUS(diffrt_session_create(model_, nullptr, nullptr), DIFFRT_E_INVALID_ARGUMENT, "out is NULL"); }
TEST_F(Api, SessionCreateDefaultOptions) {
  diffrt_session* s = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, nullptr, &s), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}
TEST_F(Api, SessionCreateWrongStructSize) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.struct_size = sizeof(so) + 8;
  diffrt_session* s = nullptr;
  EXPECT_STATUS(diffrt_session_create(model_, &so, &s), DIFFRT_E_INVALID_ARGUMENT, "options->struct_size");
}
TEST_F(Api, SessionCreateCudaWithoutDeviceIsUnsupported) {
  int n = -1;
  ASSERT_EQ(diffrt_device_count(DIFFRT_DEVICE_CUDA, &n), DIFFRT_OK) << diffrt_last_error();
  if (n > 0) GTEST_SKIP() << "a CUDA device is present (tests/gpu/api_test.cpp covers CUDA sessions)";
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.device = DIFFRT_DEVICE_CUDA;
  diffrt_session* s = reinterpret_cast<diffrt_session*>(0x1);
  EXPECT_STATUS(diffrt_session_create(model_, &so, &s), DIFFRT_E_UNSUPPORTED, "device cuda: ");
  EXPECT_TRUE(msg_has("use the cpu device"));
  EXPECT_EQ(s, nullptr);
}
TEST_F(Api, SessionCreateDeterministicNotBoolean) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.deterministic = 2;
  diffrt_session* s = nullptr;
  EXPECT_STATUS(diffrt_session_create(model_, &so, &s), DIFFRT_E_INVALID_ARGUMENT, "deterministic = 2");
}
// A 0.1 caller's options (24 bytes) are accepted; the fields it lacks take their defaults.
TEST_F(Api, SessionOptionsVersion01Accepted) {
  struct {
    diffrt_session_options o;
    char tail[16];
  } v;
  std::memset(static_cast<void*>(&v), 0x7f, sizeof(v));  // garbage where 0.2 fields would be
  v.o.struct_size = 24;
  v.o.device = DIFFRT_DEVICE_CPU;
  v.o.threads = 1;
  v.o.memory_limit_bytes = 0;
  diffrt_session* s = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, &v.o, &s), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}

TEST(ApiDevices, CpuCountIsOne) {
  int n = -1;
  ASSERT_EQ(diffrt_device_count(DIFFRT_DEVICE_CPU, &n), DIFFRT_OK);
  EXPECT_EQ(n, 1);
}
TEST(ApiDevices, CudaCountSaysWhyWhenZero) {
  int n = -1;
  ASSERT_EQ(diffrt_device_count(DIFFRT_DEVICE_CUDA, &n), DIFFRT_OK) << diffrt_last_error();
  EXPECT_GE(n, 0);
  if (n == 0) EXPECT_STRNE(diffrt_last_error(), "");  // no backend or no device: the reason
  else EXPECT_STREQ(diffrt_last_error(), "");
}
TEST(ApiDevices, UnknownDevice) {
  int n = -1;
  EXPECT_STATUS(diffrt_device_count(diffrt_device(5), &n), DIFFRT_E_INVALID_ARGUMENT, "device = 5");
  EXPECT_EQ(n, 0);
}
TEST(ApiDevices, NullCount) { EXPECT_STATUS(diffrt_device_count(DIFFRT_DEVICE_CPU, nullptr), DIFFRT_E_INVALID_ARGUMENT, "count is NULL"); }
TEST_F(Api, SessionCreateUnknownDevice) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.device = diffrt_device(7);
  diffrt_session* s = nullptr;
  EXPECT_STATUS(diffrt_session_create(model_, &so, &s), DIFFRT_E_INVALID_ARGUMENT, "device");
}
TEST_F(Api, SessionCreateNegativeThreads) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.threads = -2;
  diffrt_session* s = nullptr;
  EXPECT_STATUS(diffrt_session_create(model_, &so, &s), DIFFRT_E_INVALID_ARGUMENT, "threads");
}
TEST_F(Api, SessionFreeNullIsOk) { EXPECT_EQ(diffrt_session_free(nullptr), DIFFRT_OK); }

// ---- sample: argument checks ---------------------------------------------------------------

TEST_F(Api, SampleNullSession) { EXPECT_STATUS(diffrt_sample(nullptr, &p_, buf_.data(), buf_.size(), nullptr), DIFFRT_E_INVALID_ARGUMENT, "session is NULL"); }
TEST_F(Api, SampleNullParams) { EXPECT_STATUS(diffrt_sample(s_, nullptr, buf_.data(), buf_.size(), nullptr), DIFFRT_E_INVALID_ARGUMENT, "params is NULL"); }
TEST_F(Api, SampleStructSizeZero) { p_.struct_size = 0; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->struct_size"); }
TEST_F(Api, SampleStructSizeTooLarge) { p_.struct_size = sizeof(p_) + 16; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->struct_size"); }
TEST_F(Api, SampleBatchZero) { p_.batch = 0; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "batch = 0"); }
TEST_F(Api, SampleBatchHuge) { p_.batch = 1000000; p_.num_class_labels = 1; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "batch = 1000000"); }
TEST_F(Api, SampleBatchTooLargeWithGuidance) {
  p_.batch = 4000; p_.num_class_labels = 1; p_.guidance_scale = 3.0f;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "with guidance");
}
TEST_F(Api, SampleSizeNotMultipleOfDownsample) { p_.height = 17; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "downsample factor 2"); }
TEST_F(Api, SampleSizeNegative) { p_.width = -16; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "must be positive"); }
TEST_F(Api, SampleSizeAbsurd) { p_.height = p_.width = 100000; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "height = 100000"); }
TEST_F(Api, SampleGuidanceNaN) { p_.guidance_scale = std::nanf(""); EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "guidance_scale"); }
TEST_F(Api, SampleGuidanceNegative) { p_.guidance_scale = -1.0f; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "guidance_scale"); }
TEST_F(Api, SampleGuidanceInfinite) { p_.guidance_scale = INFINITY; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "guidance_scale"); }
TEST_F(Api, SampleClassOutOfRange) {
  const int32_t l[2] = {3, 11};
  p_.class_labels = l;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "class label 11 out of range [0, 10]");
}
TEST_F(Api, SampleClassNegative) {
  const int32_t l[1] = {-1};
  p_.class_labels = l; p_.num_class_labels = 1;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "class label -1");
}
TEST_F(Api, SampleClassMissingOnConditionalModel) {
  p_.class_labels = nullptr; p_.num_class_labels = 0;
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "class-conditional");
}
TEST_F(Api, SampleClassCountMismatch) { p_.batch = 4; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "give 1 or batch = 4"); }
TEST_F(Api, SampleClassPointerNullWithCount) { p_.class_labels = nullptr; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "class_labels is NULL"); }
TEST_F(Api, SampleClassPointerWithZeroCount) { p_.num_class_labels = 0; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "num_class_labels is 0"); }
TEST_F(Api, SampleCapacityTooSmall) {
  EXPECT_STATUS(diffrt_sample(s_, &p_, buf_.data(), buf_.size() - 1, &written_), DIFFRT_E_INVALID_ARGUMENT, "too small");
  EXPECT_EQ(written_, buf_.size());  // the size needed
}
TEST_F(Api, SampleNullOutput) {
  EXPECT_STATUS(diffrt_sample(s_, &p_, nullptr, 0, &written_), DIFFRT_E_INVALID_ARGUMENT, "out_images is NULL");
  EXPECT_EQ(written_, buf_.size());
}
TEST_F(Api, SampleStepsZero) { p_.steps = 0; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "steps = 0"); }
TEST_F(Api, SampleStepsNegative) { p_.steps = -5; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "steps = -5"); }
TEST_F(Api, SampleStepsAboveTrainSteps) { p_.steps = 1001; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "num_train_timesteps"); }
TEST_F(Api, SampleUnknownSampler) { p_.sampler = diffrt_sampler(99); EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->sampler"); }
TEST_F(Api, SampleUnknownRng) { p_.rng = diffrt_rng(9); EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->rng"); }
TEST_F(Api, SampleEtaNaN) { p_.eta = std::nanf(""); EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "eta"); }
TEST_F(Api, SampleEtaWithDdpm) { p_.sampler = DIFFRT_SAMPLER_DDPM; p_.eta = 0.5f; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "eta applies to ddim only"); }
TEST_F(Api, SampleSchedulerJsonNotJson) { p_.scheduler_config_json = "{nope"; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "scheduler config override"); }
TEST_F(Api, SampleSchedulerJsonNotObject) { p_.scheduler_config_json = "[1]"; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "expected a JSON object"); }
TEST_F(Api, SampleSchedulerJsonEmptyString) { p_.scheduler_config_json = ""; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "empty string"); }
TEST_F(Api, SampleSchedulerJsonBadValue) {
  p_.scheduler_config_json = "{\"timestep_spacing\": \"sideways\"}";
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "sideways");
}
TEST_F(Api, SampleMemoryLimit) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.memory_limit_bytes = 1024;
  diffrt_session* s = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, &so, &s), DIFFRT_OK);
  EXPECT_STATUS(diffrt_sample(s, &p_, buf_.data(), buf_.size(), nullptr), DIFFRT_E_OUT_OF_MEMORY, "memory limit");
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}
TEST_F(Api, MemoryEstimateGrowsWithTheRequest) {
  uint64_t one = 0, two = 0, big = 0;
  p_.batch = 1;
  p_.num_class_labels = 1;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &one), DIFFRT_OK) << diffrt_last_error();
  p_.batch = 2;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &two), DIFFRT_OK) << diffrt_last_error();
  p_.height = p_.width = 64;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &big), DIFFRT_OK) << diffrt_last_error();
  EXPECT_GT(one, 0u);
  EXPECT_GT(two, one);
  EXPECT_GT(big, 8 * two);  // 16x the pixels
}
TEST_F(Api, MemoryEstimateValidates) {
  uint64_t b = 7;
  p_.batch = 0;
  EXPECT_STATUS(diffrt_sample_memory_estimate(s_, &p_, &b), DIFFRT_E_INVALID_ARGUMENT, "batch = 0");
  EXPECT_EQ(b, 0u);
}
TEST_F(Api, MemoryEstimateNullOut) { EXPECT_STATUS(diffrt_sample_memory_estimate(s_, &p_, nullptr), DIFFRT_E_INVALID_ARGUMENT, "out_bytes is NULL"); }
// A limit between what batch 1 and batch 2 need: batch 2 is out of memory with the amount, and the
// same session then serves batch 1 exactly as a fresh session does.
TEST_F(Api, MemoryLimitRefusesWithTheAmountThenServesASmallerRequest) {
  p_.num_class_labels = 1;
  p_.batch = 1;
  uint64_t need1 = 0, need2 = 0;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &need1), DIFFRT_OK);
  p_.batch = 2;
  ASSERT_EQ(diffrt_sample_memory_estimate(s_, &p_, &need2), DIFFRT_OK);
  ASSERT_LT(need1, need2);
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.threads = 1;
  so.memory_limit_bytes = (need1 + need2) / 2;
  diffrt_session* s = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, &so, &s), DIFFRT_OK);
  size_t n = 0;
  ASSERT_EQ(diffrt_sample_output_size(s, &p_, &n), DIFFRT_OK) << diffrt_last_error();  // checks no memory
  EXPECT_EQ(n, buf_.size());
  EXPECT_STATUS(diffrt_sample(s, &p_, buf_.data(), buf_.size(), &written_), DIFFRT_E_OUT_OF_MEMORY,
                (std::to_string(need2) + " bytes").c_str());
  EXPECT_TRUE(msg_has((std::to_string(so.memory_limit_bytes) + " bytes").c_str())) << diffrt_last_error();
  EXPECT_EQ(written_, 0u);
  p_.batch = 1;
  std::vector<float> got(16 * 16, -1.0f), want(16 * 16, -2.0f);
  ASSERT_EQ(diffrt_sample(s, &p_, got.data(), got.size(), &written_), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(written_, got.size());
  ASSERT_EQ(diffrt_sample(s_, &p_, want.data(), want.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(got, want);
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}
// Memory is checked before the output capacity: a request that cannot fit is out of memory even when
// the buffer is also too small (the size needed is still reported).
TEST_F(Api, MemoryLimitCheckedBeforeCapacity) {
  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.memory_limit_bytes = 1024;
  diffrt_session* s = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, &so, &s), DIFFRT_OK);
  EXPECT_STATUS(diffrt_sample(s, &p_, nullptr, 0, &written_), DIFFRT_E_OUT_OF_MEMORY, "memory limit");
  EXPECT_EQ(written_, buf_.size());
  EXPECT_EQ(diffrt_session_free(s), DIFFRT_OK);
}
// A 0.1 caller's params (104 bytes): accepted, and whatever lies where 0.2 fields would be is ignored.
TEST_F(Api, SampleParamsVersion01Accepted) {
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  const std::vector<float> ref = buf_;
  struct {
    diffrt_sample_params p;
    char tail[8];
  } v;
  std::memset(static_cast<void*>(&v), 0x33, sizeof(v));
  std::memcpy(static_cast<void*>(&v.p), &p_, 104);
  v.p.struct_size = 104;
  std::fill(buf_.begin(), buf_.end(), -1.0f);
  ASSERT_EQ(diffrt_sample(s_, &v.p, buf_.data(), buf_.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(buf_, ref);
}
TEST_F(Api, SampleUnknownOutput) { p_.output = diffrt_output(4); EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "params->output = 4"); }
TEST_F(Api, SampleLatentsFromPixelModel) { p_.output = DIFFRT_OUTPUT_LATENTS; EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "samples pixels"); }
TEST_F(Api, SampleEmbedsOnNonTextModel) {
  const float e[4] = {};
  p_.prompt_embeds = diffrt_text_embeds{e, 1, 1, 4};
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "not text-conditioned");
}
TEST_F(Api, SampleNegativeEmbedsOnNonTextModel) {
  const float e[4] = {};
  p_.negative_prompt_embeds = diffrt_text_embeds{e, 1, 1, 4};
  EXPECT_STATUS(sample(), DIFFRT_E_INVALID_ARGUMENT, "not text-conditioned");
}
TEST_F(Api, OutputSizeQuery) {
  size_t n = 0;
  ASSERT_EQ(diffrt_sample_output_size(s_, &p_, &n), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(n, size_t(2 * 16 * 16));
  p_.batch = 0;
  EXPECT_STATUS(diffrt_sample_output_size(s_, &p_, &n), DIFFRT_E_INVALID_ARGUMENT, "batch = 0");
  EXPECT_STATUS(diffrt_sample_output_size(s_, &p_, nullptr), DIFFRT_E_INVALID_ARGUMENT, "out_floats is NULL");
}

// ---- sample: runs ----------------------------------------------------------------------------

TEST_F(Api, SampleWritesImagesIn01) {
  p_.guidance_scale = 2.0f;
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(written_, buf_.size());
  for (float v : buf_) ASSERT_TRUE(v >= 0.0f && v <= 1.0f) << v;
  EXPECT_STREQ(diffrt_last_error(), "");
}

TEST_F(Api, SampleDdimTorchWithSchedulerOverride) {
  p_.sampler = DIFFRT_SAMPLER_DDIM;
  p_.rng = DIFFRT_RNG_TORCH;
  p_.eta = 0.5f;
  p_.num_class_labels = 1;  // broadcast to the batch
  p_.scheduler_config_json = "{\"timestep_spacing\": \"trailing\"}";
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
}

TEST_F(Api, BroadcastLabelEqualsExplicitLabels) {
  const int32_t same[2] = {5, 5};
  p_.class_labels = same;
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  const std::vector<float> a = buf_;
  p_.num_class_labels = 1;
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(a, buf_);
}

struct CancelAt {
  int cancel_at = 0, calls = 0, last_total = 0;
};
int cancel_cb(int step, int total, void* user) {
  auto* c = static_cast<CancelAt*>(user);
  ++c->calls;
  c->last_total = total;
  return step == c->cancel_at ? 1 : 0;
}

TEST_F(Api, CancelledRunThenSessionServesNormally) {
  CancelAt c{2};
  p_.progress = cancel_cb;
  p_.user = &c;
  EXPECT_STATUS(sample(), DIFFRT_E_CANCELLED, "cancelled");
  EXPECT_EQ(c.calls, 2);
  EXPECT_EQ(c.last_total, 4);
  EXPECT_EQ(written_, 0u);

  c = CancelAt{-1};
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(c.calls, 4);
  const std::vector<float> after_cancel = buf_;

  diffrt_session_options so;
  diffrt_session_options_init(&so);
  so.threads = 1;
  diffrt_session* fresh = nullptr;
  ASSERT_EQ(diffrt_session_create(model_, &so, &fresh), DIFFRT_OK);
  std::vector<float> ref(buf_.size());
  ASSERT_EQ(diffrt_sample(fresh, &p_, ref.data(), ref.size(), nullptr), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(after_cancel, ref);
  EXPECT_EQ(diffrt_session_free(fresh), DIFFRT_OK);
}

TEST_F(Api, SessionSurvivesFailedRequests) {
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  const std::vector<float> ref = buf_;
  p_.height = p_.width = 100000;
  EXPECT_NE(sample(), DIFFRT_OK);
  p_.height = p_.width = 0;
  p_.steps = 5000;
  EXPECT_NE(sample(), DIFFRT_OK);
  p_.steps = 4;
  std::fill(buf_.begin(), buf_.end(), -1.0f);
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(buf_, ref);
}

struct Reenter {
  diffrt_session* s;
  const diffrt_sample_params* p;
  diffrt_status sample_status = DIFFRT_OK, free_status = DIFFRT_OK, release_status = DIFFRT_OK;
  std::string message;
};
int reenter_cb(int step, int, void* user) {
  auto* r = static_cast<Reenter*>(user);
  if (step != 1) return 0;
  float tmp[2 * 16 * 16];
  r->sample_status = diffrt_sample(r->s, r->p, tmp, 2 * 16 * 16, nullptr);
  r->message = diffrt_last_error();
  r->free_status = diffrt_session_free(r->s);
  r->release_status = diffrt_session_release_cache(r->s);
  return 0;
}

TEST_F(Api, ProgressCallbackCannotReenterItsSession) {
  Reenter r{s_, &p_, DIFFRT_OK, DIFFRT_OK, DIFFRT_OK, {}};
  p_.progress = reenter_cb;
  p_.user = &r;
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();
  EXPECT_EQ(r.sample_status, DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("busy"), std::string::npos) << r.message;
  EXPECT_EQ(r.free_status, DIFFRT_E_INVALID_ARGUMENT);
  EXPECT_EQ(r.release_status, DIFFRT_E_INVALID_ARGUMENT);
}

// ---- eval ------------------------------------------------------------------------------------

TEST_F(Api, EvalMatchesDiffusersFixture) {
  const std::string fx = source_path("tests/fixtures/models/class_cond/");
  diffrt::NpyArray x = diffrt::read_npy(fx + "x.npy"), t = diffrt::read_npy(fx + "t.npy"),
                   l = diffrt::read_npy(fx + "labels.npy"), ref = diffrt::read_npy(fx + "out.npy");
  ASSERT_EQ(x.shape.size(), 4u);
  const int n = int(x.shape[0]), h = int(x.shape[2]), w = int(x.shape[3]);
  std::vector<float> ts(static_cast<size_t>(n));
  if (t.type == diffrt::NpyType::F32) { auto v = t.as_f32(); for (int i = 0; i < n; ++i) ts[i] = v[t.shape[0] == 1 ? 0 : i]; }
  else { auto v = t.as_i64(); for (int i = 0; i < n; ++i) ts[i] = float(v[t.shape[0] == 1 ? 0 : i]); }
  std::vector<int32_t> labels;
  for (int64_t v : l.as_i64()) labels.push_back(int32_t(v));
  const std::vector<float> xin = x.as_f32(), want = ref.as_f32();
  std::vector<float> out(want.size());
  size_t written = 0;
  ASSERT_EQ(diffrt_eval(s_, xin.data(), n, h, w, ts.data(), labels.data(), out.data(), out.size(), &written), DIFFRT_OK)
      << diffrt_last_error();
  EXPECT_EQ(written, want.size());
  EXPECT_LT(diffrt::test::rel_l2(out.data(), want.data(), want.size()), 1e-5);
}

class ApiEval : public Api {
 protected:
  diffrt_status eval(int n = 1, int h = 16, int w = 16, bool labels = true, size_t cap = 256) {
    return diffrt_eval(s_, x_.data(), n, h, w, t_, labels ? l_ : nullptr, out_.data(), cap, &written_);
  }
  std::vector<float> x_ = std::vector<float>(2 * 20 * 20, 0.1f), out_ = std::vector<float>(2 * 20 * 20);
  const float t_[2] = {10.0f, 500.0f};
  const int32_t l_[2] = {1, 2};
};

TEST_F(ApiEval, Ok) { ASSERT_EQ(eval(), DIFFRT_OK) << diffrt_last_error(); EXPECT_EQ(written_, 256u); }
TEST_F(ApiEval, NullSession) { EXPECT_STATUS(diffrt_eval(nullptr, x_.data(), 1, 16, 16, t_, l_, out_.data(), 256, nullptr), DIFFRT_E_INVALID_ARGUMENT, "session is NULL"); }
TEST_F(ApiEval, NullSample) { EXPECT_STATUS(diffrt_eval(s_, nullptr, 1, 16, 16, t_, l_, out_.data(), 256, nullptr), DIFFRT_E_INVALID_ARGUMENT, "sample is null"); }
TEST_F(ApiEval, NullTimesteps) { EXPECT_STATUS(diffrt_eval(s_, x_.data(), 1, 16, 16, nullptr, l_, out_.data(), 256, nullptr), DIFFRT_E_INVALID_ARGUMENT, "timesteps is null"); }
TEST_F(ApiEval, BatchZero) { EXPECT_STATUS(eval(0), DIFFRT_E_INVALID_ARGUMENT, "n = 0"); }
TEST_F(ApiEval, SizeNotMultiple) { EXPECT_STATUS(eval(1, 15, 16), DIFFRT_E_INVALID_ARGUMENT, "downsample factor"); }
TEST_F(ApiEval, LabelsMissing) { EXPECT_STATUS(eval(1, 16, 16, false), DIFFRT_E_INVALID_ARGUMENT, "class_labels are required"); }
TEST_F(ApiEval, CapacityTooSmall) {
  EXPECT_STATUS(eval(2, 16, 16, true, 511), DIFFRT_E_INVALID_ARGUMENT, "too small");
  EXPECT_EQ(written_, 512u);
}
TEST_F(ApiEval, TimestepNaN) {
  const float bad[1] = {std::nanf("")};
  EXPECT_STATUS(diffrt_eval(s_, x_.data(), 1, 16, 16, bad, l_, out_.data(), 256, nullptr), DIFFRT_E_INVALID_ARGUMENT, "not finite");
}
TEST_F(ApiEval, LabelOutOfRange) {
  const int32_t bad[1] = {42};
  EXPECT_STATUS(diffrt_eval(s_, x_.data(), 1, 16, 16, t_, bad, out_.data(), 256, nullptr), DIFFRT_E_INVALID_ARGUMENT, "out of range");
}

// ---- the C++ API the C API wraps ------------------------------------------------------------

TEST_F(Api, CppSessionThrowsTypedErrorsAndSurvives) {
  std::shared_ptr<const diffrt::Model> m = diffrt::Model::load(path_);
  EXPECT_EQ(m->info().num_classes, 11);
  EXPECT_EQ(m->info().default_sampler, "ddpm");
  diffrt::SessionOptions so;
  so.threads = 1;
  diffrt::Session s(m, so);
  diffrt::SampleOptions o;
  o.steps = 4;
  o.seed = 11;
  o.batch = 2;
  o.class_labels = {3, 7};
  const diffrt::ImageShape shape = s.output_shape(o);
  EXPECT_EQ(shape.numel(), size_t(2 * 16 * 16));
  diffrt::SampleOptions bad = o;
  bad.width = 30000;
  try {
    s.sample(bad);
    FAIL() << "expected diffrt::Error";
  } catch (const diffrt::Error& e) {
    EXPECT_EQ(e.code(), diffrt::ErrorCode::InvalidArgument);
  }
  const std::vector<float> img = s.sample(o);
  ASSERT_EQ(sample(), DIFFRT_OK) << diffrt_last_error();  // the C API on the same request
  EXPECT_EQ(img, buf_);
  EXPECT_EQ(s.cached_executors(), 1u);
  s.release_cache();
  EXPECT_EQ(s.cached_executors(), 0u);
  EXPECT_EQ(s.device(), diffrt::Device::Cpu);
  diffrt::SessionOptions cuda;
  cuda.device = diffrt::Device::Cuda;
  std::string why;
  if (diffrt::device_count(diffrt::Device::Cuda, &why) == 0) {
    EXPECT_FALSE(why.empty());
    try {
      diffrt::Session gpu(m, cuda);
      FAIL() << "expected diffrt::Error(Unsupported)";
    } catch (const diffrt::Error& e) {
      EXPECT_EQ(e.code(), diffrt::ErrorCode::Unsupported);
    }
  }
}

// One set of backend weights per loaded model (issue 16 item 8), counted through the API: two CPU sessions, each
// running a prompted request (text encoder, loop, VAE decode) and eval / decode / encode_prompts, share the one
// fp32 host copy. The model is mixed precision (fp16 UNet and text encoder, fp32 VAE). CUDA: tests/gpu/api_test.cpp.
TEST(ApiWeights, OneHostCopyForEveryPhaseAndSession) {
  diffrt::ConvertOptions opt;
  opt.input = diffrt::test::assemble_text_pipeline("sd1", "api_uploads");
  opt.output = diffrt::test::temp_dir("api_uploads_m") + "/m.drt";
  opt.dtype = diffrt::DType::F16;
  diffrt::convert_diffusers(opt);
  auto m = diffrt::Model::load(opt.output);
  EXPECT_EQ(m->weight_uploads(), 0) << "loading makes no backend copy";
  diffrt::SessionOptions so;
  so.threads = 2;
  int phases = 0;
  {
    diffrt::Session a(m, so), b(m, so);
    diffrt::SampleOptions o;
    o.prompts = {"a photo of a cat", "a dog"};
    o.guidance_scale = 7.5f;
    o.steps = 2;
    for (diffrt::Session* s : {&a, &b}) {
      EXPECT_EQ(s->sample(o).size(), s->output_shape(o).numel());  // text encoder + loop + decode
      int len = 0, dim = 0;
      const std::vector<float> e = s->encode_prompts(o.prompts, &len, &dim);
      std::vector<float> z(size_t(2) * 4 * 8 * 8, 0.1f);
      const float t[2] = {10.0f, 500.0f};
      s->eval(z.data(), 2, 8, 8, t, nullptr, diffrt::TextEmbeddings{e.data(), 2, len, dim});
      s->decode(z.data(), 2, 8, 8);
      phases += 5;
    }
    EXPECT_EQ(m->weight_uploads(), 1);
  }
  diffrt::Session again(m, so);
  EXPECT_EQ(m->weight_uploads(), 1) << "the host copy outlives the sessions (the model holds it)";
  EXPECT_EQ(phases, 10);
}

}  // namespace
