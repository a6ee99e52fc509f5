// The VAE encoder (issue 13, part 1) on the CPU: conversion into the model file (format version 2, the
// vae_encoder section, old files still read, bad files refused), the encoder graph and posterior against
// diffusers 0.27.2 (tests/fixtures/img2img/vae_encode: AutoencoderKL.encode on the tiny SD VAEs at even and odd
// sizes, DiagonalGaussianDistribution with the torch generator, the logvar clamp), the Philox posterior noise, and
// Session::encode with its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "api/diffrt.hpp"
#include "base/checked_math.h"
#include "base/error.h"
#include "base/layout.h"
#include "base/npy.h"
#include "kernels/common/philox.h"
#include "kernels/vae_posterior/vae_posterior.h"
#include "model/model_file.h"
#include "runtime/cpu_executor.h"
#include "runtime/rng.h"
#include "runtime/vae_encode.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

const char* kCases[] = {"sd1_b2_16x16", "sd1_b1_24x40", "sd1_b1_18x10", "sd1_b1_17x15",
                        "sd2_b2_16x16", "sd2_b1_24x40", "sd2_b1_18x10"};

fs::path enc_fixture(const std::string& c) { return test::source_path("tests/fixtures/img2img/vae_encode/" + c); }
std::string model_of(const std::string& c) { return c.substr(0, 3) + "_tiny"; }

using Converted = test::ConvertedModel;

// One conversion per fixture model per test binary.
const Converted& converted(const std::string& model) {
  return test::converted_once(model, [&] {
    return test::convert_options(test::source_path("tests/fixtures/sd/" + model + "/pipeline"), "venc_" + model);
  });
}

// Some run metadata hold Python's -Infinity / Infinity / NaN (e.g. sigmas), which JSON has not: read them as null.
json meta_of(const fs::path& d) { return test::load_json_nonfinite_as_null((d / "meta.json").string()); }

std::vector<float> npy_f32(const fs::path& p) { return read_npy(p.string()).as_f32(); }

struct Fixture {
  int n = 0, h = 0, w = 0;        // images
  int lh = 0, lw = 0;             // latents
  std::vector<float> x_nhwc;      // images NHWC
  std::vector<float> moments;     // NCHW [n, 8, lh, lw]
  std::vector<float> eps, sample; // NCHW [n, 4, lh, lw]
  uint64_t seed = 0;
};

Fixture load_case(const std::string& c) {
  const fs::path d = enc_fixture(c);
  Fixture f;
  NpyArray x = read_npy((d / "x.npy").string());
  f.n = int(x.shape[0]); f.h = int(x.shape[2]); f.w = int(x.shape[3]);
  f.x_nhwc = nchw_to_nhwc(x.as_f32(), f.n, 3, f.h, f.w);
  NpyArray m = read_npy((d / "moments.npy").string());
  f.lh = int(m.shape[2]); f.lw = int(m.shape[3]);
  f.moments = m.as_f32();
  f.eps = npy_f32(d / "eps.npy");
  f.sample = npy_f32(d / "sample.npy");
  f.seed = meta_of(d)["seed"].get<uint64_t>();
  return f;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel_tol, double abs_tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double rel = test::rel_l2(got.data(), want.data(), want.size());
  const double mx = test::max_abs_diff(got.data(), want.data(), want.size());
  EXPECT_LT(rel, rel_tol) << what << " max_abs " << mx;
  EXPECT_LT(mx, abs_tol) << what << " rel_l2 " << rel;
  std::printf("  %-40s rel_l2 %.3g  max_abs %.3g\n", what.c_str(), rel, mx);
}

}  // namespace

// ---- conversion and the model file ----------------------------------------------------------------------------

TEST(VaeEncoderConvert, FileHoldsTheEncoderGraphAndTensors) {
  for (const char* m : {"sd1_tiny", "sd2_tiny"}) {
    const ModelFile& mf = converted(m).file;
    EXPECT_EQ(mf.version, 3u) << m;
    ASSERT_TRUE(mf.vae_encoder.present()) << m;
    const Graph& g = mf.vae_encoder.graph;
    EXPECT_EQ(g.in_channels, 3) << m;
    EXPECT_EQ(g.out_channels, 8) << m;
    EXPECT_LT(g.timestep, 0);
    EXPECT_EQ(g.nodes.back().name, "quant_conv") << m;
    int enc = 0, dec = 0;
    for (const TensorInfo& t : mf.tensors) {
      enc += t.name.rfind("vae.encoder.", 0) == 0 || t.name.rfind("vae.quant_conv.", 0) == 0;
      dec += t.name.rfind("vae.decoder.", 0) == 0 || t.name.rfind("vae.post_quant_conv.", 0) == 0;
    }
    EXPECT_GT(enc, 0) << m;
    EXPECT_GT(dec, 0) << m;
    // The downsampler: 3x3 stride 2 with diffusers' (0, 1, 0, 1) padding.
    bool found = false;
    for (const Node& nd : g.nodes)
      if (nd.name == "encoder.down_blocks.0.downsamplers.0.conv") {
        const auto& a = std::get<Conv2dAttrs>(nd.attrs);
        EXPECT_EQ(a.stride, 2);
        EXPECT_EQ(a.pad_top, 0); EXPECT_EQ(a.pad_left, 0); EXPECT_EQ(a.pad_bottom, 1); EXPECT_EQ(a.pad_right, 1);
        found = true;
      }
    EXPECT_TRUE(found) << m;
  }
}

TEST(VaeEncoderConvert, OptionsAndCheckpointsWithoutEncoder) {
  const std::string dir = test::temp_dir("venc_opts");
  ConvertOptions opt;
  opt.input = test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  opt.output = dir + "/noenc.drt";
  opt.no_vae_encoder = true;
  ConvertReport r = convert_diffusers(opt);
  EXPECT_EQ(r.vae_encoder_nodes, 0u);
  ModelFile a = read_model_file(opt.output);
  EXPECT_TRUE(a.vae.present());
  EXPECT_FALSE(a.vae_encoder.present());
  for (const TensorInfo& t : a.tensors) EXPECT_NE(t.name.rfind("vae.encoder.", 0), 0u) << t.name;
  opt.no_vae_encoder = false;
  opt.no_vae = true;
  opt.output = dir + "/novae.drt";
  convert_diffusers(opt);
  ModelFile b = read_model_file(opt.output);
  EXPECT_FALSE(b.vae.present());
  EXPECT_FALSE(b.vae_encoder.present());
  for (const TensorInfo& t : b.tensors) EXPECT_NE(t.name.rfind("vae.", 0), 0u) << t.name;

  // A VAE checkpoint stripped to its decoder: converted without the encoder, with a warning.
  const fs::path src = test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  const fs::path copy = fs::path(dir) / "pipe";
  fs::copy(src, copy, fs::copy_options::recursive);
  const fs::path st = copy / "vae" / "diffusion_pytorch_model.safetensors";
  const std::map<std::string, SafeTensor> weights = read_safetensors(st.string()).tensors;
  auto write = [&](const std::map<std::string, SafeTensor>& ts) {
    std::vector<SafeTensor> v;
    for (const auto& [k, t] : ts) v.push_back(t);
    const std::vector<uint8_t> bytes = encode_safetensors(v);
    std::ofstream(st, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()),
                                                               std::streamsize(bytes.size()));
  };
  std::map<std::string, SafeTensor> kept;
  for (const auto& [k, t] : weights)
    if (k.rfind("encoder.", 0) != 0 && k.rfind("quant_conv.", 0) != 0) kept.emplace(k, t);
  write(kept);
  ConvertOptions o2;
  o2.input = copy.string();
  o2.output = dir + "/stripped.drt";
  ConvertReport r2 = convert_diffusers(o2);
  bool warned = false;
  for (const auto& w : r2.warnings) warned = warned || w.find("no encoder weights") != std::string::npos;
  EXPECT_TRUE(warned);
  EXPECT_FALSE(read_model_file(o2.output).vae_encoder.present());

  // One encoder tensor missing: an error naming it, no output file.
  std::map<std::string, SafeTensor> partial(weights);
  partial.erase("encoder.mid_block.attentions.0.to_q.weight");
  write(partial);
  o2.output = dir + "/partial.drt";
  try {
    convert_diffusers(o2);
    ADD_FAILURE() << "a VAE missing an encoder tensor converted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidModel);
    EXPECT_NE(std::string(e.what()).find("encoder.mid_block.attentions.0.to_q.weight"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o2.output));
}

namespace {

using Parts = test::ModelFileParts;
Parts split(const std::vector<uint8_t>& f) { return test::split_model_file(f); }
std::vector<uint8_t> assemble(const json& header, const std::vector<uint8_t>& data, uint32_t version) {
  return test::assemble_model_file(header.dump(), data, version);
}
std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void expect_refused(const std::vector<uint8_t>& f, const std::string& field, const std::string& what) {
  try {
    parse_model_file(f.data(), f.size(), "t.drt");
    ADD_FAILURE() << "accepted; expected an error about " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidModel) << e.what();
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

}  // namespace

// Versions 1 and 2 record no graph dtype (version 3 does: tests/format_test.cpp).
void strip_graph_dtypes(json& h) {
  for (const char* g : {"vae", "vae_encoder", "text_encoder"})
    if (h.contains(g)) h[g]["graph"].erase("dtype");
  h["graph"].erase("dtype");
}

TEST(VaeEncoderFormat, Version1FilesStayReadableAndVersionsAreChecked) {
  const Parts p = split(file_bytes(converted("sd1_tiny").path));
  ASSERT_EQ(p.header["version"], 3);
  // A version 2 file is a version 3 file without graph dtypes.
  json v2 = p.header;
  strip_graph_dtypes(v2);
  v2["version"] = 2;
  const std::vector<uint8_t> f2 = assemble(v2, p.data, 2);
  ModelFile m2 = parse_model_file(f2.data(), f2.size(), "v2.drt");
  EXPECT_EQ(m2.version, 2u);
  EXPECT_TRUE(m2.vae_encoder.present());
  EXPECT_EQ(m2.vae_encoder.graph.dtype, converted("sd1_tiny").file.vae_encoder.graph.dtype);
  // A version 1 file is a version 2 file without the encoder section.
  json v1 = v2;
  v1.erase("vae_encoder");
  v1["version"] = 1;
  const std::vector<uint8_t> f1 = assemble(v1, p.data, 1);
  ModelFile m1 = parse_model_file(f1.data(), f1.size(), "v1.drt");
  EXPECT_EQ(m1.version, 1u);
  EXPECT_TRUE(m1.vae.present());
  EXPECT_FALSE(m1.vae_encoder.present());
  try {
    require_vae_encoder(m1);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("format version 1"), std::string::npos) << e.what();
  }
  // The committed version-1 fuzz seed (written before format version 2) still reads.
  ModelFile seed = read_model_file(test::source_path("tests/fuzz/regressions/model_file/seed_text_vae.drt"));
  EXPECT_EQ(seed.version, 1u);

  json with_enc_v1 = v2;
  with_enc_v1["version"] = 1;
  expect_refused(assemble(with_enc_v1, p.data, 1), "vae_encoder", "needs format version 2");
  expect_refused(assemble(p.header, p.data, 4), "version", "unsupported format version 4");
  expect_refused(assemble(p.header, p.data, 0), "version", "unsupported format version 0");
  expect_refused(assemble(p.header, p.data, 1), "version", "differs from the preamble");
}

TEST(VaeEncoderFormat, BadEncoderSectionsAreRefused) {
  const Parts p = split(file_bytes(converted("sd1_tiny").path));
  auto edited = [&](const std::function<void(json&)>& edit) {
    json h = p.header;
    edit(h);
    return assemble(h, p.data, kFormatVersion);  // the header says the version it was written with
  };
  expect_refused(edited([](json& h) { h.erase("vae"); }), "vae_encoder", "needs the VAE");
  expect_refused(edited([](json& h) { h["vae_encoder"]["extra"] = 1; }), "vae_encoder", "extra");
  expect_refused(edited([](json& h) { h["vae_encoder"] = 3; }), "vae_encoder", "");
  expect_refused(edited([](json& h) { h["vae_encoder"]["graph"]["out_channels"] = 6; }), "vae_encoder.graph.out_channels",
                 "twice");
  expect_refused(edited([](json& h) { h["vae_encoder"]["graph"]["nodes"] = json::array(); }), "vae_encoder.graph", "");
  expect_refused(edited([](json& h) {
                   auto& nodes = h["vae_encoder"]["graph"]["nodes"];
                   nodes[0]["weights"]["weight"] = "vae.encoder.nope";
                 }),
                 "vae_encoder.graph.nodes[0]", "not in the tensor table");
  expect_refused(edited([](json& h) { h["vae_encoder"]["graph"]["inputs"]["timestep"] = 0; }), "vae_encoder.graph", "");
}

// ---- the encoder and the posterior against diffusers ----------------------------------------------------------

TEST(VaeEncoderParity, MomentsMatchDiffusers) {
  int cases = 0;
  for (const char* c : kCases) {
    const ModelFile& mf = converted(model_of(c)).file;
    CpuWeights weights(mf);
    const Fixture f = load_case(c);
    int lh = 0, lw = 0;
    vae_encoder_latent_hw(mf, f.h, f.w, &lh, &lw);
    EXPECT_EQ(lh, f.lh) << c;
    EXPECT_EQ(lw, f.lw) << c;
    CpuExecutor ex(mf, weights, mf.vae_encoder.graph, PlanInputs{f.n, f.h, f.w, 0});
    const std::vector<float> m = encode_moments_cpu(ex, f.x_nhwc.data());
    // torch ran a channels-last view (the pipeline's layout); its conv differs from a contiguous one by ~1e-6.
    expect_close(nhwc_to_nchw(m, f.n, f.lh, f.lw, 8), f.moments, 2e-6, 2e-5, std::string(c) + " moments");
    ++cases;
  }
  EXPECT_EQ(cases, 7);
}

TEST(VaeEncoderParity, TorchGeneratorSampleMatchesDiffusers) {
  for (const char* c : kCases) {
    const ModelFile& mf = converted(model_of(c)).file;
    const Fixture f = load_case(c);
    // Our torch.randn replay of the posterior's draw.
    TorchGenerator g0(f.seed);
    expect_close(g0.randn(f.eps.size()), f.eps, 1e-6, 1e-5, std::string(c) + " eps");
    // The posterior on diffusers' own moments: isolates the posterior from the encoder.
    const std::vector<float> m_nhwc = nchw_to_nhwc(f.moments, f.n, 8, f.lh, f.lw);
    TorchGenerator gen(f.seed);
    PosteriorOptions o;
    o.rng = RngKind::Torch;
    o.generator = &gen;
    o.scaled = false;
    EncodedLatents z = posterior_cpu(mf, m_nhwc, f.n, f.lh, f.lw, o);
    expect_close(nhwc_to_nchw(z.data, z.n, z.h, z.w, z.c), f.sample, 1e-6, 1e-5, std::string(c) + " posterior sample");
    // The whole encode through the engine's CPU path (scaled: the pipelines' init_latents).
    auto model = Model::load(converted(model_of(c)).path);
    Session s(model);
    EncodeOptions eo;
    eo.rng = Rng::Torch;
    eo.seed = f.seed;
    const std::vector<float> got = s.encode(f.x_nhwc.data(), f.n, f.h, f.w, eo);
    std::vector<float> want(f.sample);
    for (float& v : want) v *= 0.18215f;
    expect_close(got, want, 3e-6, 2e-5, std::string(c) + " encode (torch)");
    // The mean (mode()) and the moments through the API.
    eo.sample = false;
    eo.scaled = false;
    const std::vector<float> mean = s.encode(f.x_nhwc.data(), f.n, f.h, f.w, eo);
    std::vector<float> want_mean;
    const size_t per = size_t(f.lh) * size_t(f.lw);
    for (int b = 0; b < f.n; ++b)
      want_mean.insert(want_mean.end(), f.moments.begin() + long(size_t(b) * 8 * per),
                       f.moments.begin() + long((size_t(b) * 8 + 4) * per));
    expect_close(mean, want_mean, 2e-6, 2e-5, std::string(c) + " mean");
    expect_close(s.encode_moments(f.x_nhwc.data(), f.n, f.h, f.w), f.moments, 2e-6, 2e-5, std::string(c) + " moments (API)");
    const ImageShape sh = s.encode_output_shape(f.n, f.h, f.w);
    EXPECT_EQ(sh.batch, f.n);
    EXPECT_EQ(sh.channels, 4);
    EXPECT_EQ(sh.height, f.lh);
    EXPECT_EQ(sh.width, f.lw);
    EXPECT_TRUE(sh.latents);
  }
}

// Every img2img and inpaint run's encodes: the moments of the preprocessed image (and of inpainting's masked image),
// and the img2img init_latents from the run's generator (the posterior is the first draw: README section 5).
TEST(VaeEncoderParity, PipelineRunsEncodeAsDiffusers) {
  int moments = 0, latents = 0;
  auto moments_of = [&](const std::string& model, const fs::path& image_nchw) {
    NpyArray x = read_npy(image_nchw.string());
    const int n = int(x.shape[0]), h = int(x.shape[2]), w = int(x.shape[3]);
    Session s(Model::load(converted(model).path));
    return s.encode_moments(nchw_to_nhwc(x.as_f32(), n, 3, h, w).data(), n, h, w);
  };
  const fs::path root = test::source_path("tests/fixtures/img2img");
  for (const char* cfg : {"sd1", "sd2"})
    for (const auto& e : fs::directory_iterator(root / "img2img" / cfg)) {
      const fs::path d = e.path();
      const std::string model = std::string(cfg) + "_tiny";
      expect_close(moments_of(model, d / "preprocessed.npy"), npy_f32(d / "moments.npy"), 3e-6, 3e-5,
                   d.filename().string() + " moments");
      ++moments;
      NpyArray x = read_npy((d / "preprocessed.npy").string());
      const int n = int(x.shape[0]), h = int(x.shape[2]), w = int(x.shape[3]);
      Session s(Model::load(converted(model).path));
      EncodeOptions o;
      o.rng = Rng::Torch;
      o.seed = meta_of(d)["seed"].get<uint64_t>();
      const std::vector<float> z = s.encode(nchw_to_nhwc(x.as_f32(), n, 3, h, w).data(), n, h, w, o);
      const std::vector<float> want = npy_f32(d / "init_latents.npy");  // tiled to the batch: compare the first rows
      ASSERT_GE(want.size(), z.size()) << d;
      expect_close(z, std::vector<float>(want.begin(), want.begin() + long(z.size())), 3e-6, 3e-5,
                   d.filename().string() + " init_latents");
      ++latents;
    }
  for (const auto& e : fs::directory_iterator(root / "inpaint")) {
    const fs::path d = e.path();
    const std::string model = d.filename().string().rfind("sd2_", 0) == 0 ? "sd2_tiny" : "sd1_tiny";
    if (fs::exists(d / "image_moments.npy")) {
      expect_close(moments_of(model, d / "init_image.npy"), npy_f32(d / "image_moments.npy"), 3e-6, 3e-5,
                   d.filename().string() + " image moments");
      ++moments;
    }
    expect_close(moments_of(model, d / "masked_image.npy"), npy_f32(d / "masked_image_moments.npy"), 3e-6, 3e-5,
                 d.filename().string() + " masked image moments");
    ++moments;
  }
  EXPECT_EQ(latents, 14);
  EXPECT_GE(moments, 14 + 9 + 5);
}

TEST(VaeEncoderParity, GaussianClampMatchesDiffusers) {
  const fs::path d = enc_fixture("gaussian_clamp");
  NpyArray p = read_npy((d / "parameters.npy").string());
  const int n = int(p.shape[0]), c2 = int(p.shape[1]), h = int(p.shape[2]), w = int(p.shape[3]);
  const std::vector<float> want = npy_f32(d / "sample.npy");
  const std::vector<float> m = nchw_to_nhwc(p.as_f32(), n, c2, h, w);
  TorchGenerator gen(meta_of(d)["seed"].get<uint64_t>());
  const std::vector<float> eps = torch_randn_nchw_to_nhwc(gen, n, c2 / 2, h, w);
  std::vector<float> out(eps.size());
  VaePosteriorParams q;
  q.moments = m.data(); q.eps = eps.data(); q.out = out.data();
  q.n = n; q.h = h; q.w = w; q.c = c2 / 2;
  q.noise = PosteriorNoise::Given;
  vae_posterior_ref(q);
  // std reaches exp(10) = 22026 at the clamp, so an ulp of eps is ~5e-3 there: the bound is relative.
  double peak = 0;
  for (float v : want) peak = std::max(peak, double(std::fabs(v)));
  expect_close(nhwc_to_nchw(out, n, h, w, c2 / 2), want, 1e-6, 4e-7 * peak, "gaussian_clamp");
  // The clamp bites at both ends: logvar -40 and 30 behave as -30 and 20.
  const float lo[2] = {1.0f, -40.0f}, hi[2] = {1.0f, 30.0f}, e = 2.0f;
  float o = 0;
  VaePosteriorParams one;
  one.eps = &e; one.out = &o; one.n = one.h = one.w = one.c = 1; one.noise = PosteriorNoise::Given;
  one.moments = lo;
  vae_posterior_ref(one);
  EXPECT_FLOAT_EQ(o, 1.0f + std::exp(0.5f * -30.0f) * 2.0f);
  one.moments = hi;
  one.scale = 0.5f;
  vae_posterior_ref(one);
  EXPECT_FLOAT_EQ(o, 0.5f * (1.0f + std::exp(10.0f) * 2.0f));
}

// ---- Philox posterior noise ------------------------------------------------------------------------------------

TEST(VaeEncoderPhilox, NoiseIsPerSampleAndStreamAndDistinctFromTheSampler) {
  const ModelFile& mf = converted("sd1_tiny").file;
  const int n = 3, h = 5, w = 7, c = 4;
  std::vector<float> m(size_t(n) * h * w * 2 * c);
  for (size_t i = 0; i < m.size(); ++i) m[i] = float(std::sin(double(i)));
  PosteriorOptions o;
  o.seed = 1234;
  o.scaled = false;
  const EncodedLatents all = posterior_cpu(mf, m, n, h, w, o);
  const size_t per = size_t(h) * w * c;
  for (int i = 0; i < n; ++i) {
    PosteriorOptions oi = o;
    oi.first_sample_index = uint32_t(i);
    const std::vector<float> mi(m.begin() + long(size_t(i) * 2 * per), m.begin() + long(size_t(i + 1) * 2 * per));
    const EncodedLatents one = posterior_cpu(mf, mi, 1, h, w, oi);
    EXPECT_EQ(0, std::memcmp(one.data.data(), all.data.data() + size_t(i) * per, per * sizeof(float))) << i;
  }
  // The noise itself: (latents - mean) / std = Philox(seed, sample, stream, kTagPosterior) at NCHW indices.
  std::vector<float> noise(per);
  fill_philox_normal(1234, 0, 0, philox::kTagPosterior, h, w, c, noise.data());
  for (size_t k = 0; k < per; ++k) {
    const float mean = m[(k / c) * 2 * c + k % c], lv = m[(k / c) * 2 * c + c + k % c];
    EXPECT_NEAR((all.data[k] - mean) / std::exp(0.5f * lv), noise[k], 1e-5) << k;
  }
  // Another stream (the masked image of inpainting) and the sampler's initial noise differ.
  PosteriorOptions o1 = o;
  o1.stream = 1;
  EXPECT_NE(posterior_cpu(mf, m, n, h, w, o1).data, all.data);
  std::vector<float> initial(per);
  fill_philox_normal(1234, 0, 0, philox::kTagInitial, h, w, c, initial.data());
  EXPECT_NE(initial, noise);
  // The mean draws nothing.
  PosteriorOptions om = o;
  om.sample = false;
  const EncodedLatents mean = posterior_cpu(mf, m, n, h, w, om);
  for (size_t k = 0; k < mean.data.size(); ++k) EXPECT_EQ(mean.data[k], m[(k / c) * 2 * c + k % c]);
}

// ---- Session::encode: refusals ----------------------------------------------------------------------------------

namespace {

void expect_bad(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected an error naming " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(VaeEncoderApi, BadInputIsRefusedNamingTheArgument) {
  auto model = Model::load(converted("sd1_tiny").path);
  EXPECT_TRUE(model->info().has_vae_encoder);
  EXPECT_EQ(model->info().encoder_image_channels, 3);
  Session s(model);
  std::vector<float> x(size_t(2) * 16 * 16 * 3, 0.25f);
  expect_bad([&] { s.encode(nullptr, 1, 16, 16); }, "images is null");
  expect_bad([&] { s.encode(x.data(), 0, 16, 16); }, "n = 0");
  expect_bad([&] { s.encode(x.data(), 1, 1, 16); }, "height = 1");
  expect_bad([&] { s.encode(x.data(), 1, 16, 9000); }, "width = 9000");
  x[17] = std::nanf("");
  expect_bad([&] { s.encode(x.data(), 1, 16, 16); }, "images[0, 0, 5, 2] (NHWC) is NaN");
  x[17] = INFINITY;
  expect_bad([&] { s.encode_moments(x.data(), 1, 16, 16); }, "is infinite");
  x[17] = 0.0f;
  x[16 * 16 * 3 + 3] = 1.5f;
  expect_bad([&] { s.encode(x.data(), 2, 16, 16); }, "images[1, 0, 1, 0] (NHWC) = 1.5");
  x[16 * 16 * 3 + 3] = -1.0f;
  EncodeOptions bad_rng;
  bad_rng.rng = Rng(7);
  expect_bad([&] { s.encode(x.data(), 2, 16, 16, bad_rng); }, "rng");
  EXPECT_EQ(s.encode(x.data(), 2, 16, 16).size(), size_t(2) * 4 * 8 * 8);

  // A file without an encoder, and a pixel-space model.
  const std::string dir = test::temp_dir("venc_api");
  ConvertOptions opt;
  opt.input = test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  opt.output = dir + "/noenc.drt";
  opt.no_vae_encoder = true;
  convert_diffusers(opt);
  Session s2(Model::load(opt.output));
  EXPECT_FALSE(s2.model().info().has_vae_encoder);
  expect_bad([&] { s2.encode(x.data(), 1, 16, 16); }, "no VAE encoder");
  opt.input = test::source_path("tests/fixtures/models/cifar_like");
  opt.output = dir + "/pixel.drt";
  opt.no_vae_encoder = false;
  convert_diffusers(opt);
  Session s3(Model::load(opt.output));
  expect_bad([&] { s3.encode(x.data(), 1, 16, 16); }, "no VAE");
  expect_bad([&] { s3.encode_output_shape(1, 16, 16); }, "no VAE");
}
