// DiT parity on the CPU backend against diffusers 0.27.2 (tests/fixtures/dit, tests/fixtures/dit_extra; random
// weights): Transformer2DModel forwards (square, resized and non-square grids, float and integer timesteps, the null
// class, patch 1/2/8, affine norm3, gelu/gelu_tanh/geglu, shared and per-block embedders), diffusers' own
// intermediates (position table, patch tokens, timestep sinusoid, per-block conditioning, modulation and outputs,
// final tokens), the VAE decode, and DiTPipeline runs through the sampler (--rng torch semantics).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "base/layout.h"
#include "base/npy.h"
#include "kernels/patch_embed/patch_embed.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "model/model_file.h"
#include "model/scheduler_config.h"
#include "runtime/cpu_executor.h"
#include "runtime/latent_pipeline.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;
using namespace diffrt;
using nlohmann::json;

namespace {

fs::path dit(const std::string& rel) { return test::source_path("tests/fixtures/dit/" + rel); }

// One conversion per source folder per test binary.
const ModelFile& converted(const std::string& src) {
  return test::converted_once(src, [&] { return test::convert_options(test::source_path(src), "dit_parity"); }).file;
}
const ModelFile& fixture_model(const std::string& c) { return converted("tests/fixtures/dit/" + c + "/pipeline"); }

const CpuWeights& weights_of(const ModelFile& mf) {
  static std::map<const ModelFile*, std::unique_ptr<CpuWeights>> cache;
  auto& w = cache[&mf];
  if (!w) w = std::make_unique<CpuWeights>(mf);
  return *w;
}

std::vector<float> npy_f32(const fs::path& p) { return read_npy(p.string()).as_f32(); }
// Timesteps as the model takes them (float32; int64 fixtures converted exactly).
std::vector<float> npy_timesteps(const fs::path& p) {
  NpyArray a = read_npy(p.string());
  if (a.type == NpyType::F32) return a.as_f32();
  std::vector<float> t;
  for (int64_t v : a.as_i64()) t.push_back(float(v));
  return t;
}
std::vector<int32_t> npy_labels(const fs::path& p) {
  std::vector<int32_t> y;
  for (int64_t v : read_npy(p.string()).as_i64()) y.push_back(int32_t(v));
  return y;
}

double max_abs_of(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

struct Forward {
  std::vector<float> out;                         // NCHW
  std::map<std::string, std::vector<float>> nodes;  // node name -> output (NHWC / [N, C])
};

// Runs the transformer on one fixture case (x NCHW, t, y); keeps the outputs of the nodes named in `keep`.
Forward run_forward(const ModelFile& mf, const fs::path& dir, const std::vector<std::string>& keep = {}) {
  NpyArray x = read_npy((dir / "x.npy").string());
  const int n = int(x.shape[0]), c = int(x.shape[1]), h = int(x.shape[2]), w = int(x.shape[3]);
  std::vector<float> xs = nchw_to_nhwc(x.as_f32(), n, c, h, w), ts = npy_timesteps(dir / "t.npy");
  std::vector<int32_t> ys = npy_labels(dir / "class_labels.npy");
  CpuExecutor ex(mf, weights_of(mf), mf.graph, PlanInputs{n, h, w, 0});
  Forward f;
  ex.on_node = [&](int k, const float* out, const ValueShape& s) {
    const std::string& name = mf.graph.nodes[size_t(k)].name;
    if (std::find(keep.begin(), keep.end(), name) != keep.end()) f.nodes[name].assign(out, out + s.numel());
  };
  const int co = mf.graph.out_channels;
  std::vector<float> out(size_t(n) * h * w * co);
  ex.run(xs.data(), ts.data(), ys.data(), out.data());
  f.out = nhwc_to_nchw(out, n, h, w, co);
  return f;
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                  double max_abs_tol, double rel_tol = 1e-5) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double rel = test::rel_l2(got.data(), want.data(), want.size());
  const double mx = test::max_abs_diff(got.data(), want.data(), want.size());
  std::printf("[dit] %-44s rel_l2 %.3g  max_abs %.3g\n", what.c_str(), rel, mx);
  EXPECT_LE(mx, max_abs_tol) << what;
  EXPECT_LE(rel, rel_tol) << what;
}

}  // namespace

TEST(DiTParity, ForwardMatchesDiffusers) {
  struct Case {
    const char* model;
    const char* fwd;
  } cases[] = {{"dit_s8_sigma", "fwd0"}, {"dit_s8_sigma", "fwd1"}, {"dit_s8_sigma", "fwd2"},
               {"dit_s12_eps", "fwd0"},  {"dit_c10", "fwd0"}};
  int ran = 0;
  for (const Case& c : cases) {
    const ModelFile& mf = fixture_model(c.model);
    const fs::path d = dit(std::string(c.model) + "/" + c.fwd);
    Forward f = run_forward(mf, d);
    // README: about 1e-5 absolute on outputs of std ~0.5; fp32 on the CPU lands near 1e-6.
    expect_close(std::string(c.model) + "/" + c.fwd + " out", f.out, npy_f32(d / "out.npy"), 1e-5, 1e-5);
    ++ran;
  }
  EXPECT_EQ(ran, 5);
}

TEST(DiTParity, ExtraConfigsAndNonSquareGrids) {
  struct Case {
    const char* model;  // a source folder under tests/fixtures
    const char* dir;    // the case folder under tests/fixtures/dit_extra
  } cases[] = {{"dit/dit_s8_sigma/pipeline", "nonsquare/h8w12"},  {"dit/dit_s8_sigma/pipeline", "nonsquare/h12w4"},
               {"dit_extra/dit_p8_affine/transformer", "dit_p8_affine/fwd0"},
               {"dit_extra/dit_p1_geglu/transformer", "dit_p1_geglu/fwd0"},
               {"dit_extra/dit_p1_geglu/transformer", "dit_p1_geglu/h8w6"}};
  int ran = 0;
  for (const Case& c : cases) {
    const ModelFile& mf = converted(std::string("tests/fixtures/") + c.model);
    const fs::path d = test::source_path(std::string("tests/fixtures/dit_extra/") + c.dir);
    Forward f = run_forward(mf, d, {"proj_out_2"});
    expect_close(std::string(c.dir) + " out", f.out, npy_f32(d / "out.npy"), 1e-5, 1e-5);
    if (fs::exists(d / "final_tokens.npy"))  // diffusers' own proj_out_2 output: the unpatchify input
      expect_close(std::string(c.dir) + " final tokens", f.nodes["proj_out_2"], npy_f32(d / "final_tokens.npy"), 1e-5);
    ++ran;
  }
  EXPECT_EQ(ran, 5);
}

TEST(DiTParity, IntermediatesMatchDiffusers) {
  int checked = 0;
  for (const char* m : {"dit_s8_sigma", "dit_s12_eps", "dit_c10"}) {
    SCOPED_TRACE(m);
    const ModelFile& mf = fixture_model(m);
    const fs::path d = dit(std::string(m) + "/fwd0"), im = d / "intermediates";
    const json cfg = mf.config;
    const int D = cfg["num_attention_heads"].get<int>() * cfg["attention_head_dim"].get<int>();
    const int S = cfg["sample_size"].get<int>(), p = cfg["patch_size"].get<int>(), L = 2;
    const bool shared = mf.find("adaln_modulation.weight") != nullptr;
    std::vector<std::string> keep = {"pos_embed", "proj_out_2"};
    for (int i = 0; i < L; ++i) {
      keep.push_back("transformer_blocks." + std::to_string(shared ? 0 : i) + ".norm1.emb");
      keep.push_back(shared ? "adaln_modulation" : "transformer_blocks." + std::to_string(i) + ".norm1.linear");
      keep.push_back("transformer_blocks." + std::to_string(i) + ".ff.net.2");
    }
    Forward f = run_forward(mf, d, keep);
    const std::string tag = std::string(m) + " ";

    // The position table: our formula against diffusers' registered buffer.
    std::vector<float> table(size_t(S / p) * (S / p) * D);
    const Node* pe = nullptr;
    for (const Node& nd : mf.graph.nodes)
      if (nd.name == "pos_embed") pe = &nd;
    ASSERT_NE(pe, nullptr);
    const float interp = std::get<PatchEmbedAttrs>(pe->attrs).interpolation_scale;  // dit_c10: 1.5
    EXPECT_FLOAT_EQ(interp, m == std::string("dit_c10") ? 1.5f : 1.0f);
    pos_embed_table_ref(S / p, S / p, D, S / p, interp, table.data());
    expect_close(tag + "pos_embed table", table, npy_f32(im / "pos_embed.npy"), 1e-7, 1e-7);
    expect_close(tag + "patch tokens", f.nodes["pos_embed"], npy_f32(im / "patch_tokens.npy"), 2e-6, 1e-6);
    // The timestep sinusoid (denominator 127, cos first). README: allow ~1e-4 (libm exp differs by an ulp).
    const std::vector<float> t = npy_timesteps(d / "t.npy");
    std::vector<float> tproj(t.size() * 256);
    sinusoidal_embedding_ref(t.data(), int(t.size()), 256, true, 1.0f, 10000.0f, tproj.data());
    expect_close(tag + "t_proj", tproj, npy_f32(im / "t_proj.npy"), 1e-4, 1e-4);
    const int B = int(t.size());
    for (int i = 0; i < L; ++i) {
      const std::string bi = "block" + std::to_string(i);
      expect_close(tag + bi + " cond", f.nodes["transformer_blocks." + std::to_string(shared ? 0 : i) + ".norm1.emb"],
                   npy_f32(im / (bi + "_cond.npy")), 1e-4, 2e-5);
      std::vector<float> mod;
      if (shared) {  // block i's 6D slice of the fused [B, 6D*L + 2D] vector
        const std::vector<float>& all = f.nodes["adaln_modulation"];
        const size_t width = all.size() / size_t(B);
        for (int b = 0; b < B; ++b)
          mod.insert(mod.end(), all.begin() + long(size_t(b) * width + size_t(6 * D * i)),
                     all.begin() + long(size_t(b) * width + size_t(6 * D * (i + 1))));
      } else {
        mod = f.nodes["transformer_blocks." + std::to_string(i) + ".norm1.linear"];
      }
      expect_close(tag + bi + " modulation", mod, npy_f32(im / (bi + "_modulation.npy")), 1e-5, 1e-5);
      expect_close(tag + bi + " out", f.nodes["transformer_blocks." + std::to_string(i) + ".ff.net.2"],
                   npy_f32(im / (bi + "_out.npy")), 1e-5, 1e-5);
    }
    expect_close(tag + "final tokens", f.nodes["proj_out_2"], npy_f32(im / "final_tokens.npy"), 1e-5, 1e-5);
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

TEST(DiTParity, VaeDecodeMatchesDiffusers) {
  for (const char* m : {"dit_s8_sigma", "dit_s12_eps", "dit_c10"}) {
    const ModelFile& mf = fixture_model(m);
    const fs::path d = dit(std::string(m) + "/vae_decode");
    NpyArray z = read_npy((d / "latents.npy").string());
    const int n = int(z.shape[0]), c = int(z.shape[1]), h = int(z.shape[2]), w = int(z.shape[3]);
    std::vector<float> raw = decode_latents_cpu(mf, weights_of(mf), nchw_to_nhwc(z.as_f32(), n, c, h, w), n, h, w);
    const int f = vae_scale_factor(mf);
    EXPECT_EQ(f, 2);
    expect_close(std::string(m) + " vae raw", nhwc_to_nchw(raw, n, f * h, f * w, 3), npy_f32(d / "raw.npy"), 1e-5);
    expect_close(std::string(m) + " vae image", to_image_01(raw), npy_f32(d / "image.npy"), 1e-5);
  }
}

namespace {

// A DiTPipeline run (tests/fixtures/dit/<model>/pipelines/<run>) through run_sampler, the CPU executor as the model.
// The sampler batches [null x B; labels] while DiTPipeline batches [labels; null x B]: every row of a transformer
// call is computed independently, so the two orders give the same numbers row for row (cfg_order in the model file
// records diffusers' order for engines that want to match it literally).
struct PipelineResult {
  std::vector<float> latents, images, x_t;
  SampleRequest req;
};

PipelineResult run_pipeline(const ModelFile& mf, const fs::path& run_dir, SamplerKind kind = SamplerKind::Ddim) {
  // Python's json: the DPM configs hold lambda_min_clipped = -Infinity.
  std::ifstream mf_in(run_dir / "meta.json");
  const json meta = parse_scheduler_config_text(std::string(std::istreambuf_iterator<char>(mf_in), {}),
                                                (run_dir / "meta.json").string());
  const SchedulerConfig sched = scheduler_config_from_json(meta["effective_scheduler_config"], "meta.json");
  PipelineResult r;
  SampleRequest& req = r.req;
  req.sampler = kind;
  req.steps = meta["steps"].get<int>();
  req.seed = meta["seed"].get<uint64_t>();
  req.rng = RngKind::Torch;
  req.batch = meta["batch"].get<int>();
  const std::vector<int64_t> shape = meta["latent_shape"].get<std::vector<int64_t>>();
  req.channels = int(shape[1]);
  req.height = int(shape[2]);
  req.width = int(shape[3]);
  for (int64_t y : meta["class_labels"].get<std::vector<int64_t>>()) req.class_labels.push_back(int32_t(y));
  req.guidance_scale = meta["guidance_scale"].get<float>();
  req.null_class = mf.conditioning.null_class;
  std::map<int, std::unique_ptr<CpuExecutor>> ex;  // by model batch
  UNetFn unet = [&](const float* x, const float* t, const int32_t* labels, int bm, float* out) {
    auto& e = ex[bm];
    if (!e) e = std::make_unique<CpuExecutor>(mf, weights_of(mf), bm, req.height, req.width);
    e->run(x, t, labels, out);
  };
  std::vector<float> lat = run_sampler(sched, req, mf.graph.out_channels, unet, {});
  r.latents = nhwc_to_nchw(lat, req.batch, req.height, req.width, req.channels);
  r.images = to_image_01(decode_latents_cpu(mf, weights_of(mf), lat, req.batch, req.height, req.width));
  TorchGenerator gen(req.seed);
  r.x_t = nhwc_to_nchw(torch_randn_nchw_to_nhwc(gen, req.batch, req.channels, req.height, req.width), req.batch,
                       req.height, req.width, req.channels);
  return r;
}

}  // namespace

// The runs of tests/fixtures/dit/*/pipelines whose folder name starts with `prefix` through the sampler as `kind`.
int check_pipeline_runs(const std::string& prefix, SamplerKind kind) {
  int runs = 0;
  for (const char* m : {"dit_s8_sigma", "dit_s12_eps", "dit_c10"}) {
    const ModelFile& mf = fixture_model(m);
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(dit(std::string(m) + "/pipelines"))) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const fs::path& d : dirs) {
      if (d.filename().string().rfind(prefix, 0) != 0) continue;
      PipelineResult r = run_pipeline(mf, d, kind);
      const std::vector<float> want_lat = npy_f32(d / "latents.npy"), want_img = npy_f32(d / "images.npy");
      // The initial noise is torch.randn with the run's seed (the pipeline's only draw).
      const double noise_err = test::max_abs_diff(r.x_t.data(), npy_f32(d / "x_T.npy").data(), r.x_t.size());
      const double lat_err = test::max_abs_diff(r.latents.data(), want_lat.data(), want_lat.size());
      const double img_err = test::max_abs_diff(r.images.data(), want_img.data(), want_img.size());
      std::printf("[dit pipe] %-13s %-14s noise %.3g  latents max_abs %.3g (of %.3g)  images max_abs %.3g\n", m,
                  d.filename().c_str(), noise_err, lat_err, max_abs_of(want_lat), img_err);
      EXPECT_LE(noise_err, 1e-6) << d;
      // Latents reach |300| with random eps weights: bound them relative to their range (README "Magnitudes").
      EXPECT_LE(lat_err / max_abs_of(want_lat), 1e-5) << d;
      EXPECT_LE(img_err, 2e-5) << d;
      ++runs;
    }
  }
  return runs;
}

TEST(DiTParity, DdimPipelinesMatchDiTPipeline) {
  // ddim10_g4_b2, ddim8_g1_b1 (s8), ddim5_g4_b1 (s12), ddim6_g1_b2 (c10, label 10 = the null row, no guidance)
  EXPECT_EQ(check_pipeline_runs("ddim", SamplerKind::Ddim), 4);
}

// DPMSolverMultistepScheduler.from_config(pipe.scheduler.config) runs (dpm10_g4_b1, dpm6_g1_b2, dpm8_g4_b2: their
// meta.json holds the effective DPM++ 2M config, "linspace" or "leading" spacing as the README explains).
TEST(DiTParity, DpmPipelinesMatchDiTPipeline) {
  EXPECT_EQ(check_pipeline_runs("dpm", SamplerKind::DpmSolverMultistep), 3);
}
