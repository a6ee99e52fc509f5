// Mixed precision per component (issue 16 item 7), on the CPU: every component of a Stable Diffusion model file is
// stored, and runs, in its own dtype, as diffusers' force_upcast does.
//   * the converter: --dtype fp16 keeps a force_upcast VAE in fp32 (bf16 with vae_dtype), the text encoder as
//     asked; bf16 and fp32 follow --dtype; each graph records its dtype and every tensor it reads is in it;
//   * mixed-dtype model files round-trip (read -> write -> read: same dtypes, same bytes);
//   * CPU runs of a mixed model: each component equals the same component converted alone in its dtype bit for
//     bit (the fp32 VAE of an fp16 model decodes exactly as the fp32 model's), and the whole prompt -> image run
//     stays within the fp16 tolerance of the fp32 run;
//   * flags for components that are not converted are refused with clear errors.
// The same model on CUDA: tests/gpu/sd_test.cpp (MixedPrecision*).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "model/model_file.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;

namespace {

struct Dtypes {
  DType unet;
  std::optional<DType> vae, text;
};

ConvertReport convert_text_model(const std::string& pipeline, const Dtypes& d, const std::string& out) {
  ConvertOptions o;
  o.input = pipeline;
  o.output = out;
  o.dtype = d.unet;
  o.vae_dtype = d.vae;
  o.text_encoder_dtype = d.text;
  return convert_diffusers(o);
}

const std::string& text_pipeline() {
  static const std::string p = test::assemble_text_pipeline("sd1", "mixed_precision_src");
  return p;
}

// Converted once per test process.
std::string converted(const std::string& name, const Dtypes& d) {
  static const std::string dir = test::temp_dir("mixed_precision");
  const std::string out = dir + "/" + name + ".drt";
  if (!fs::exists(out)) convert_text_model(text_pipeline(), d, out);
  return out;
}

// Every tensor a graph reads is in the graph's dtype.
void expect_graph_tensors_in(const ModelFile& m, const Graph& g, DType dt, const std::string& what) {
  EXPECT_EQ(g.dtype, dt) << what;
  size_t n = 0;
  for (const Node& nd : g.nodes)
    for (const auto& [role, name] : nd.weights) {
      const TensorInfo* t = m.find(name);
      ASSERT_NE(t, nullptr) << name;
      EXPECT_EQ(t->dtype, dt) << what << ": " << name;
      ++n;
    }
  EXPECT_GT(n, 0u) << what << " reads no tensor";
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

TEST(MixedPrecision, ConverterStoresEachComponentInItsDtype) {
  struct Case {
    Dtypes asked;
    DType unet, vae, text;
  };
  const Case cases[] = {
      {{DType::F16, {}, {}}, DType::F16, DType::F32, DType::F16},                    // force_upcast: fp32 VAE
      {{DType::F16, DType::BF16, {}}, DType::F16, DType::BF16, DType::F16},          // --vae-dtype bf16
      {{DType::F16, {}, DType::F32}, DType::F16, DType::F32, DType::F32},            // --text-encoder-dtype fp32
      {{DType::BF16, {}, {}}, DType::BF16, DType::BF16, DType::BF16},                // no upcast for bf16 (diffusers)
      {{DType::F32, {}, {}}, DType::F32, DType::F32, DType::F32},
      {{DType::F32, DType::F16, DType::BF16}, DType::F32, DType::F16, DType::BF16},  // anything the user asks
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string out = test::temp_dir("mixed_convert") + "/m" + std::to_string(i++) + ".drt";
    const ConvertReport r = convert_text_model(text_pipeline(), c.asked, out);
    EXPECT_EQ(r.dtype, c.unet);
    EXPECT_EQ(r.vae_dtype, c.vae);
    EXPECT_EQ(r.text_encoder_dtype, c.text);
    const ModelFile m = read_model_file(out);
    EXPECT_EQ(m.version, kFormatVersion);
    expect_graph_tensors_in(m, m.graph, c.unet, "unet");
    expect_graph_tensors_in(m, m.vae.graph, c.vae, "vae");
    ASSERT_TRUE(m.vae_encoder.present());
    expect_graph_tensors_in(m, m.vae_encoder.graph, c.vae, "vae encoder");  // the same VAE: the same dtype
    expect_graph_tensors_in(m, m.text_encoder.graph, c.text, "text encoder");
    EXPECT_EQ(m.provenance["dtype"], dtype_name(c.unet));
    EXPECT_EQ(m.provenance["vae_dtype"], dtype_name(c.vae));
    EXPECT_EQ(m.provenance["text_encoder_dtype"], dtype_name(c.text));
    // The fp16-VAE warning only when the VAE really is stored in fp16.
    bool warned = false;
    for (const auto& w : r.warnings) warned |= w.find("force_upcast") != std::string::npos;
    EXPECT_EQ(warned, c.vae == DType::F16);
  }
}

TEST(MixedPrecision, VaeWithoutForceUpcastFollowsDtype) {
  const fs::path src = fs::path(test::temp_dir("mixed_no_upcast")) / "pipeline";
  fs::copy(text_pipeline(), src, fs::copy_options::recursive);
  const fs::path cfg = src / "vae" / "config.json";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(cfg));
  ASSERT_TRUE(j["force_upcast"].get<bool>());
  j["force_upcast"] = false;
  std::ofstream(cfg) << j.dump(2);
  const std::string out = src.parent_path().string() + "/m.drt";
  const ConvertReport r = convert_text_model(src.string(), {DType::F16, {}, {}}, out);
  EXPECT_EQ(r.vae_dtype, DType::F16);
  for (const auto& w : r.warnings) EXPECT_EQ(w.find("force_upcast"), std::string::npos) << w;
  EXPECT_EQ(read_model_file(out).vae.graph.dtype, DType::F16);
}

TEST(MixedPrecision, ComponentDtypeFlagsWithoutTheComponentAreRefused) {
  const std::string out = test::temp_dir("mixed_refused") + "/m.drt";
  auto expect_refused = [&](ConvertOptions o, const std::string& needle) {
    o.output = out;
    try {
      convert_diffusers(o);
      FAIL() << "accepted; expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << "nothing is written on an error";
  };
  ConvertOptions o;
  o.input = text_pipeline();
  o.dtype = DType::F16;
  o.no_vae = true;
  o.vae_dtype = DType::F32;
  expect_refused(o, "--vae-dtype fp32 given, but no VAE is converted (--no-vae)");
  o = ConvertOptions{};
  o.input = text_pipeline();
  o.no_text_encoder = true;
  o.text_encoder_dtype = DType::BF16;
  expect_refused(o, "--text-encoder-dtype bf16 given, but no text encoder is converted (--no-text-encoder)");
  o = ConvertOptions{};
  o.input = test::source_path("tests/fixtures/models/cifar_like");
  o.vae_dtype = DType::BF16;
  expect_refused(o, "no VAE is converted (a UNet2DModel has none)");
  o.vae_dtype.reset();
  o.text_encoder_dtype = DType::F16;
  expect_refused(o, "no text encoder is converted");
  // The sd1_tiny pipeline has a VAE but no text encoder.
  o = ConvertOptions{};
  o.input = test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  o.text_encoder_dtype = DType::F16;
  expect_refused(o, "no text encoder is converted (this folder has none)");
}

TEST(MixedPrecision, MixedFilesRoundTrip) {
  const std::string path = converted("mixed", {DType::F16, {}, {}});
  const ModelFile a = read_model_file(path);
  ASSERT_TRUE(a.vae.present() && a.text_encoder.present());
  std::vector<TensorBlob> blobs;
  for (const TensorInfo& t : a.tensors) {
    TensorBlob b;
    b.name = t.name;
    b.dtype = t.dtype;
    b.shape = t.shape;
    b.bytes.assign(a.tensor_data(t), a.tensor_data(t) + t.nbytes);
    blobs.push_back(std::move(b));
  }
  const std::vector<uint8_t> bytes = serialize_model_file(a.family, a.config, a.graph, blobs, a.scheduler,
                                                          a.conditioning, a.provenance, &a.vae, &a.text_encoder,
                                                          &a.tokenizer);
  const ModelFile b = parse_model_file(bytes.data(), bytes.size(), "rewritten");
  EXPECT_EQ(b.graph.dtype, DType::F16);
  EXPECT_EQ(b.vae.graph.dtype, DType::F32);
  EXPECT_EQ(b.text_encoder.graph.dtype, DType::F16);
  EXPECT_EQ(graph_to_json(b.vae.graph), graph_to_json(a.vae.graph));
  EXPECT_EQ(b.data, a.data);
  ASSERT_EQ(b.tensors.size(), a.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) EXPECT_EQ(b.tensors[i].dtype, a.tensors[i].dtype) << a.tensors[i].name;
  // A tensor moved to another dtype than its graph's is refused by the writer (and the reader).
  Graph g = a.vae.graph;
  g.dtype = DType::F16;
  VaeDecoder v = a.vae;
  v.graph = g;
  EXPECT_THROW(serialize_model_file(a.family, a.config, a.graph, blobs, a.scheduler, a.conditioning, a.provenance, &v,
                                    &a.text_encoder, &a.tokenizer),
               Error);
}

// Each component of the mixed model computes exactly what that component computes in a model converted in its
// dtype alone (the CPU widens stored weights to fp32, so equal weights give equal results bit for bit).
TEST(MixedPrecision, CpuComponentsEqualTheSameComponentInItsOwnDtype) {
  auto mixed = Model::load(converted("mixed", {DType::F16, {}, {}}));    // unet fp16, vae fp32, text fp16
  auto f16 = Model::load(converted("all_fp16", {DType::F16, DType::F16, {}}));
  auto f32 = Model::load(converted("all_fp32", {DType::F32, {}, {}}));
  SessionOptions so;
  so.threads = 2;
  Session sm(mixed, so), s16(f16, so), s32(f32, so);
  const std::vector<std::string> prompts = {"a photo of a cat", "an astronaut riding a horse"};
  int len = 0, dim = 0;
  const std::vector<float> em = sm.encode_prompts(prompts, &len, &dim);
  EXPECT_EQ(em, s16.encode_prompts(prompts, &len, &dim)) << "text encoder: fp16 in both";
  const std::vector<float> e32 = s32.encode_prompts(prompts, &len, &dim);
  std::printf("[mixed cpu] text encoder fp16 vs fp32 rel_l2 %.3g\n", rel_l2(em, e32));
  EXPECT_LT(rel_l2(em, e32), 2e-3) << "fp16 text encoder vs fp32";  // measured 9.4e-4
  EXPECT_GT(rel_l2(em, e32), 0.0) << "the fp16 file is not fp16";

  const ModelInfo& info = mixed->info();
  const int n = 2, h = 8, w = 8, c = info.in_channels;
  std::vector<float> x(size_t(n) * c * h * w);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
  const float t[2] = {999.0f, 301.0f};
  const TextEmbeddings ctx{e32.data(), n, len, dim};
  const std::vector<float> um = sm.eval(x.data(), n, h, w, t, nullptr, ctx);
  EXPECT_EQ(um, s16.eval(x.data(), n, h, w, t, nullptr, ctx)) << "UNet: fp16 in both";
  const double ru = rel_l2(um, s32.eval(x.data(), n, h, w, t, nullptr, ctx));
  std::printf("[mixed cpu] unet fp16 vs fp32 rel_l2 %.3g\n", ru);
  EXPECT_LT(ru, 2e-3) << "fp16 UNet vs fp32";  // measured 9.9e-4

  const std::vector<float> dm = sm.decode(x.data(), n, h, w);
  EXPECT_EQ(dm, s32.decode(x.data(), n, h, w)) << "VAE: fp32 in both (force_upcast)";
  EXPECT_NE(dm, s16.decode(x.data(), n, h, w)) << "the fp16 model's VAE is fp16";
  // The VAE's encoder (image-to-image) is the same fp32 VAE.
  const int ih = 16, iw = 16;
  std::vector<float> img(size_t(n) * ih * iw * 3);
  for (size_t i = 0; i < img.size(); ++i) img[i] = std::sin(0.11f * float(i));
  EXPECT_EQ(sm.encode_moments(img.data(), n, ih, iw), s32.encode_moments(img.data(), n, ih, iw))
      << "VAE encoder: fp32 in both";
  // A bf16 VAE beside the fp16 UNet (--vae-dtype bf16): within bf16's tolerance of the fp32 decode.
  auto vb = Model::load(converted("vae_bf16", {DType::F16, DType::BF16, {}}));
  Session sb(vb, so);
  const double rb = rel_l2(sb.decode(x.data(), n, h, w), dm);
  std::printf("[mixed cpu] vae bf16 vs fp32 rel_l2 %.3g\n", rb);
  EXPECT_LT(rb, 1e-2) << "bf16 VAE vs fp32";  // measured 2.4e-3
  EXPECT_GT(rb, 0.0);
  EXPECT_EQ(sb.eval(x.data(), n, h, w, t, nullptr, ctx), um) << "its UNet is the same fp16 UNet";
}

// Prompt -> image on the CPU: the mixed model against the fp32 model, within the fp16 tolerance; one set of host
// weights for the three phases.
TEST(MixedPrecision, CpuPromptToImageWithinFp16Tolerance) {
  auto mixed = Model::load(converted("mixed", {DType::F16, {}, {}}));
  auto f32 = Model::load(converted("all_fp32", {DType::F32, {}, {}}));
  SessionOptions so;
  so.threads = 2;
  Session sm(mixed, so), s32(f32, so);
  SampleOptions o;
  o.prompts = {"a photo of a cat"};
  o.negative_prompts = {"blurry"};
  o.guidance_scale = 5.0f;
  o.steps = 5;
  o.seed = 3;
  o.batch = 2;
  const std::vector<float> a = sm.sample(o), b = s32.sample(o);
  ASSERT_EQ(a.size(), b.size());
  double max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) max_abs = std::max(max_abs, std::fabs(double(a[i]) - b[i]));
  std::printf("[mixed cpu] prompt -> image, mixed vs fp32: rel_l2 %.3g max_abs %.3g\n", rel_l2(a, b), max_abs);
  EXPECT_LT(rel_l2(a, b), 2e-3);  // measured 1.9e-4 (fp16 weights: ~5e-4 relative each)
  EXPECT_LT(max_abs, 5e-3);       // measured 4.6e-4 on [0, 1]
  EXPECT_GT(max_abs, 0.0);
  EXPECT_EQ(mixed->weight_uploads(), 1) << "one fp32 host copy for the text encoder, the loop and the decode";
}
