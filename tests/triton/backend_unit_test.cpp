// Unit tests of the Triton backend's server-independent parts, run without a Triton server (the few
// TRITONSERVER_* functions they call are faked below): the model-config parameters and their defaults,
// the request -> diffrt_sample_params mapping (defaults as `diffrt sample`, the prompt-text and sampler
// hooks, the image cap), and the float -> byte mapping against diffrt's PNG writer.
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "image_bytes.h"
#include "model_config.h"
#include "base/image_png.h"
#include "sample_request.h"

// ---- a fake of the server's error and log functions ----------------------------------------------
struct TRITONSERVER_Error {
  TRITONSERVER_Error_Code code;
  std::string msg;
};
extern "C" {
TRITONSERVER_Error* TRITONSERVER_ErrorNew(TRITONSERVER_Error_Code code, const char* msg) {
  return new TRITONSERVER_Error{code, msg ? msg : ""};
}
void TRITONSERVER_ErrorDelete(TRITONSERVER_Error* e) { delete e; }
TRITONSERVER_Error_Code TRITONSERVER_ErrorCode(TRITONSERVER_Error* e) { return e->code; }
const char* TRITONSERVER_ErrorMessage(TRITONSERVER_Error* e) { return e->msg.c_str(); }
bool TRITONSERVER_LogIsEnabled(TRITONSERVER_LogLevel) { return false; }
TRITONSERVER_Error* TRITONSERVER_LogMessage(TRITONSERVER_LogLevel, const char*, const int, const char*) { return nullptr; }
}

namespace diffrt_triton {
namespace {

constexpr uint64_t kGiB = uint64_t(1) << 30;

ModelConfig parse_ok(const std::string& json, unsigned cores = 8, uint64_t mem = 16 * kGiB) {
  ModelConfig c;
  Error e = parse_model_config(json, "/repo/m", 3, cores, mem, &c);
  EXPECT_FALSE(e) << (e ? e->msg : "");
  return c;
}

std::string parse_err(const std::string& json, TRITONSERVER_Error_Code code = TRITONSERVER_ERROR_INVALID_ARG) {
  ModelConfig c;
  Error e = parse_model_config(json, "/repo/m", 3, 8, 16 * kGiB, &c);
  EXPECT_TRUE(e) << json;
  if (!e) return "";
  EXPECT_EQ(e->code, code) << e->msg;
  return e->msg;
}

std::string param(const std::string& k, const std::string& v) {
  return "\"" + k + "\": {\"string_value\": \"" + v + "\"}";
}

TEST(TritonModelConfig, Defaults) {
  const ModelConfig c = parse_ok(R"({"name": "digits", "max_batch_size": 0,
      "instance_group": [{"kind": "KIND_CPU", "count": 2}, {"kind": "KIND_GPU", "count": 3}]})");
  EXPECT_EQ(c.name, "digits");
  EXPECT_EQ(c.model_file, "/repo/m/3/model.drt");
  EXPECT_FALSE(c.decoupled);
  EXPECT_EQ(c.cpu_instances, 2);
  EXPECT_EQ(c.threads, 4);                           // 8 cores / 2 CPU instances
  EXPECT_EQ(c.cpu_memory_limit_bytes, 4 * kGiB);     // half of 16 GiB / 2 CPU instances
  EXPECT_EQ(c.memory_limit_bytes, 0u);               // GPU: the device's free memory decides
  EXPECT_EQ(c.max_num_images, 16);
  EXPECT_TRUE(c.deterministic);
  EXPECT_EQ(c.rng, int(DIFFRT_RNG_PHILOX));
  EXPECT_EQ(parse_ok(R"({"instance_group": [{"kind": "KIND_CPU", "count": 16}]})", 2).threads, 1);  // at least 1
}

TEST(TritonModelConfig, Parameters) {
  const ModelConfig c = parse_ok("{\"model_transaction_policy\": {\"decoupled\": true}, \"parameters\": {" +
                                 param("model_file", "sub/x.drt") + "," + param("threads", "3") + "," +
                                 param("memory_limit_bytes", "12345") + "," + param("max_num_images", "4096") + "," +
                                 param("deterministic", "0") + "," + param("rng", "torch") + "}}");
  EXPECT_TRUE(c.decoupled);
  EXPECT_EQ(c.model_file, "/repo/m/3/sub/x.drt");
  EXPECT_EQ(c.threads, 3);
  EXPECT_EQ(c.memory_limit_bytes, 12345u);
  EXPECT_EQ(c.cpu_memory_limit_bytes, 12345u);
  EXPECT_EQ(c.max_num_images, 4096);
  EXPECT_FALSE(c.deterministic);
  EXPECT_EQ(c.rng, int(DIFFRT_RNG_TORCH));
  EXPECT_EQ(parse_ok("{\"parameters\": {" + param("model_file", "/abs/y.drt") + "}}").model_file, "/abs/y.drt");
  EXPECT_EQ(parse_ok("{\"parameters\": {" + param("memory_limit_bytes", "0") + "}}").cpu_memory_limit_bytes, 0u);
}

TEST(TritonModelConfig, Refusals) {
  EXPECT_NE(parse_err("{\"parameters\": {" + param("thread", "3") + "}}").find("unknown parameter 'thread'"),
            std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("threads", "-1") + "}}").find("non-negative integer"),
            std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("threads", "99999") + "}}").find("exceeds 1024"), std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("max_num_images", "0") + "}}").find("[1, 4096]"), std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("max_num_images", "5000") + "}}").find("exceeds 4096"),
            std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("memory_limit_bytes", "99999999999999999999999") + "}}")
                .find("memory_limit_bytes"),
            std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("rng", "mt19937") + "}}").find("philox"), std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("deterministic", "yes") + "}}").find("deterministic"),
            std::string::npos);
  EXPECT_NE(parse_err("{\"parameters\": {" + param("model_file", "") + "}}").find("empty"), std::string::npos);
  EXPECT_NE(parse_err(R"({"parameters": {"threads": {"int_value": 3}}})").find("string_value"), std::string::npos);
  EXPECT_NE(parse_err(R"({"max_batch_size": 8})").find("max_batch_size must be 0"), std::string::npos);
  EXPECT_NE(parse_err(R"({"model_transaction_policy": {"decoupled": "yes"}})").find("boolean"), std::string::npos);
  parse_err("not json", TRITONSERVER_ERROR_INTERNAL);
  parse_err("[1, 2]", TRITONSERVER_ERROR_INTERNAL);
}

// ---- requests ----------------------------------------------------------------------------------------
diffrt_model_info class_model() {
  diffrt_model_info i;
  diffrt_model_info_init(&i);
  i.in_channels = i.out_channels = i.image_channels = 1;
  i.sample_size = i.image_size = 16;
  i.num_classes = 11;
  i.null_class = 10;
  i.vae_scale_factor = 1;
  return i;
}

diffrt_model_info text_model() {
  diffrt_model_info i = class_model();
  i.num_classes = 0;
  i.null_class = -1;
  i.context_dim = 32;
  i.has_vae = 1;
  i.vae_scale_factor = 8;
  i.image_channels = 3;
  i.image_size = 64;
  return i;
}

struct Made {
  Error err;
  diffrt_sample_params p{};
  ImageShape shape;
};

Made make(const diffrt_model_info& info, const RequestInputs& in, int max_images = 16) {
  ModelConfig cfg;
  cfg.max_num_images = max_images;
  Made m;
  m.err = make_sample_params(info, cfg, in, &m.p, &m.shape);
  return m;
}

TEST(TritonSampleParams, DefaultsAreTheCli) {
  RequestInputs in;
  in.class_labels = std::vector<int32_t>{3};
  Made m = make(class_model(), in);
  ASSERT_FALSE(m.err);
  EXPECT_EQ(m.p.sampler, DIFFRT_SAMPLER_DEFAULT);
  EXPECT_EQ(m.p.steps, DIFFRT_STEPS_DEFAULT);
  EXPECT_EQ(m.p.seed, 0u);
  EXPECT_EQ(m.p.batch, 1);
  EXPECT_EQ(m.p.guidance_scale, 1.0f);  // class models: off, as `diffrt sample`
  EXPECT_EQ(m.p.rng, DIFFRT_RNG_PHILOX);
  EXPECT_EQ(m.p.num_class_labels, 1u);
  EXPECT_EQ(m.shape.n, 1);
  EXPECT_EQ(m.shape.h, 16);
  EXPECT_EQ(m.shape.w, 16);
  EXPECT_EQ(m.shape.c, 1);

  RequestInputs t;
  Embeds e;
  e.batch = 2;
  e.len = 77;
  e.dim = 32;
  e.data.assign(size_t(2 * 77 * 32), 0.5f);
  t.prompt_embeds = e;
  t.height = 128;
  Made tm = make(text_model(), t);
  ASSERT_FALSE(tm.err);
  EXPECT_EQ(tm.p.guidance_scale, 7.5f);  // text models: StableDiffusionPipeline's default
  EXPECT_EQ(tm.p.batch, 2);              // the batch of the embeddings
  EXPECT_EQ(tm.p.prompt_embeds.data, t.prompt_embeds->data.data());
  EXPECT_EQ(tm.p.prompt_embeds.len, 77);
  EXPECT_EQ(tm.p.negative_prompt_embeds.data, nullptr);
  EXPECT_EQ(tm.shape.n, 2);
  EXPECT_EQ(tm.shape.h, 128);
  EXPECT_EQ(tm.shape.w, 64);
  EXPECT_EQ(tm.shape.c, 3);
}

TEST(TritonSampleParams, RequestValues) {
  RequestInputs in;
  in.class_labels = std::vector<int32_t>{1, 2, 3, 4};
  in.seed = std::numeric_limits<uint64_t>::max();
  in.steps = 20;
  in.guidance_scale = 2.5f;
  in.sampler = std::string("DDIMScheduler");
  Made m = make(class_model(), in);
  ASSERT_FALSE(m.err);
  EXPECT_EQ(m.p.batch, 4);  // from the labels
  EXPECT_EQ(m.p.num_class_labels, 4u);
  EXPECT_EQ(m.p.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(m.p.steps, 20);
  EXPECT_EQ(m.p.guidance_scale, 2.5f);
  EXPECT_STREQ(m.p.sampler_name, "DDIMScheduler");  // names go to diffrt as given (it refuses unknown ones)
  in.sampler = std::string("ddpm");
  in.num_images = 4;
  EXPECT_STREQ(make(class_model(), in).p.sampler_name, "ddpm");
  in.sampler = std::string("");
  EXPECT_EQ(make(class_model(), in).p.sampler_name, nullptr);
  EXPECT_EQ(make(class_model(), in).p.sampler, DIFFRT_SAMPLER_DEFAULT);
}

std::string err_of(const diffrt_model_info& info, const RequestInputs& in, TRITONSERVER_Error_Code code) {
  Made m = make(info, in);
  EXPECT_TRUE(m.err);
  if (!m.err) return "";
  EXPECT_EQ(m.err->code, code) << m.err->msg;
  return m.err->msg;
}

TEST(TritonSampleParams, Refusals) {
  RequestInputs in;
  in.class_labels = std::vector<int32_t>{3};
  RequestInputs r = in;
  r.steps = 0;
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("STEPS = 0 must be >= 1"), std::string::npos);
  r = in;
  r.steps = -1;  // would otherwise be DIFFRT_STEPS_DEFAULT
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("STEPS = -1"), std::string::npos);
  r = in;
  r.height = -16;
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("HEIGHT = -16"), std::string::npos);
  r = in;
  r.num_images = 17;
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("at most 16"), std::string::npos);
  r = in;
  r.class_labels = std::vector<int32_t>(100, 1);  // 100 images by the labels
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("asks for 100 images"), std::string::npos);
  r = in;
  r.prompt = std::string("a cat");
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("not text-conditioned"), std::string::npos);
  RequestInputs t;
  t.prompt = std::string("a cat");
  EXPECT_NE(err_of(text_model(), t, TRITONSERVER_ERROR_INVALID_ARG).find("no text encoder"), std::string::npos);
  t = RequestInputs();
  t.negative_prompt = std::string("blurry");
  EXPECT_NE(err_of(text_model(), t, TRITONSERVER_ERROR_INVALID_ARG).find("NEGATIVE_PROMPT needs PROMPT"),
            std::string::npos);
  // With a text encoder the prompt strings reach diffrt's params; a sampler name goes through as given.
  diffrt_model_info te = text_model();
  te.has_text_encoder = 1;
  RequestInputs u;
  u.prompt = std::string("a cat");
  u.negative_prompt = std::string("blurry");
  u.sampler = std::string("EulerDiscreteScheduler");
  Made mu = make(te, u);
  ASSERT_EQ(mu.err, nullptr);
  ASSERT_EQ(mu.p.num_prompts, 1u);
  EXPECT_STREQ(mu.p.prompts[0], "a cat");
  ASSERT_EQ(mu.p.num_negative_prompts, 1u);
  EXPECT_STREQ(mu.p.negative_prompts[0], "blurry");
  EXPECT_STREQ(mu.p.sampler_name, "EulerDiscreteScheduler");
  u.sampler = std::string("default");
  EXPECT_EQ(make(te, u).p.sampler_name, nullptr);
  t.prompt_embeds = Embeds{std::vector<float>(32, 0.f), 1, 1, 32};
  EXPECT_NE(err_of(text_model(), t, TRITONSERVER_ERROR_INVALID_ARG).find("not both"), std::string::npos);
}

// ---- bytes --------------------------------------------------------------------------------------------
// The bytes diffrt's PNG writer stores for these grey values (one row image).
std::vector<uint8_t> png_bytes(const std::vector<float>& v) {
  const std::vector<unsigned char> png = diffrt::encode_png_grid(v.data(), 1, 1, int(v.size()), 1, 1, {});
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_memory(&img, png.data(), png.size()));
  img.format = PNG_FORMAT_GRAY;
  std::vector<uint8_t> out(PNG_IMAGE_SIZE(img));
  EXPECT_TRUE(png_image_finish_read(&img, nullptr, out.data(), 0, nullptr));
  return out;
}

TEST(TritonImageBytes, EqualDiffrtPngPixels) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1e-30f, -5.0f, 1.0000001f, 7.0f, std::nanf(""),
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::denorm_min()};
  // Around every rounding boundary (k + 0.5) / 255 and every exact level k / 255, a few ulps either side.
  for (int k = 0; k <= 255; ++k)
    for (float c : {(float(k) + 0.5f) / 255.0f, float(k) / 255.0f}) {
      float x = c;
      for (int i = 0; i < 4; ++i) x = std::nextafter(x, -1.0f);
      for (int i = 0; i < 9; ++i, x = std::nextafter(x, 2.0f)) v.push_back(x);
    }
  for (size_t start = 0; start < v.size(); start += 4096) {  // rows of at most 4096 pixels
    const std::vector<float> row(v.begin() + long(start), v.begin() + long(std::min(v.size(), start + 4096)));
    const std::vector<uint8_t> want = png_bytes(row);
    ASSERT_EQ(want.size(), row.size());
    for (size_t i = 0; i < row.size(); ++i)
      ASSERT_EQ(int(to_u8(row[i])), int(want[i])) << "value " << row[i] << " (index " << start + i << ")";
  }
}


// INIT_IMAGE / MASK / STRENGTH: views of the request's tensors in the params; the output size and the batch follow
// the image; MASK or STRENGTH without INIT_IMAGE, and STRENGTH outside (0, 1], are refused here (diffrt checks the rest).
TEST(TritonSampleParams, ImageToImageInputs) {
  RequestInputs in;
  in.class_labels = std::vector<int32_t>{3};
  ImageTensor img;
  img.n = 2; img.h = 12; img.w = 20; img.c = 1;
  img.data.assign(size_t(2) * 12 * 20, 0.5f);
  ImageTensor mask;
  mask.n = 1; mask.h = 12; mask.w = 20; mask.c = 1;
  mask.data.assign(size_t(12) * 20, 1.0f);
  RequestInputs r = in;
  r.init_image = img;
  r.mask = mask;
  r.strength = 0.6f;
  Made m = make(class_model(), r);
  ASSERT_FALSE(m.err) << m.err->msg;
  EXPECT_EQ(m.p.init_image, r.init_image->data.data());
  EXPECT_EQ(m.p.init_image_batch, 2);
  EXPECT_EQ(m.p.init_image_height, 12);
  EXPECT_EQ(m.p.init_image_width, 20);
  EXPECT_EQ(m.p.init_image_channels, 1);
  EXPECT_EQ(m.p.mask, r.mask->data.data());
  EXPECT_EQ(m.p.mask_batch, 1);
  EXPECT_EQ(m.p.mask_height, 12);
  EXPECT_EQ(m.p.mask_width, 20);
  EXPECT_DOUBLE_EQ(m.p.strength, double(0.6f));
  EXPECT_EQ(m.p.height, 12);  // the image's size
  EXPECT_EQ(m.p.width, 20);
  EXPECT_EQ(m.p.batch, 2);    // one output per image
  EXPECT_EQ(m.shape.h, 12);
  EXPECT_EQ(m.shape.n, 2);
  r.strength.reset();
  EXPECT_EQ(make(class_model(), r).p.strength, 0.0);  // diffrt's default (0.8, or 1.0 with a mask)
  r = in;
  r.mask = mask;
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("MASK needs INIT_IMAGE"), std::string::npos);
  r = in;
  r.strength = 0.5f;
  EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("STRENGTH needs INIT_IMAGE"), std::string::npos);
  r.init_image = img;
  for (float bad : {0.0f, -1.0f, 1.5f, std::nanf("")}) {
    r.strength = bad;
    EXPECT_NE(err_of(class_model(), r, TRITONSERVER_ERROR_INVALID_ARG).find("STRENGTH"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace diffrt_triton
