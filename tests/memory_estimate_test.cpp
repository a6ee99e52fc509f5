// The API's memory estimate (runtime/engine/estimate.cpp) is an upper bound of what a request allocates, checked on
// the CPU against the planner's figures, phase by phase, for real model configurations built without weights:
//   * Stable Diffusion 1.5 (the published UNet and VAE configs, CLIP ViT-L/14's text config), mixed precision as
//     `diffrt convert --dtype fp16` stores it (UNet and text encoder fp16, VAE fp32: force_upcast), 512x512 and
//     1024x1024, batch 1 / 4 / 16, prompts as text (the text encoder phase) and prompt embeddings;
//   * the DDPM CIFAR-10 UNet (google/ddpm-cifar10-32), fp32, batch 64, 1000 DDPM steps.
// The figures each phase needs are rebuilt here from the planner (plan_memory + plan_device_arena, what
// CudaExecutor allocates), the contexts' workspaces and scratch (cuDNN's padding scratch per batch chunk,
// conv_batch_chunks) and the sampler's state, independently of cuda_memory_report; the estimate must cover the
// largest phase and not exceed it by more than alignment slack. The CPU estimate is checked the same way against
// the CPU planner. The CUDA executors' real allocations against these figures: tests/gpu/api_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "kernels/conv/conv.h"
#include "kernels/scheduler_step/scheduler_step.h"
#include "runtime/cuda_plan.h"
#include "runtime/engine/engine.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "weights_converter/clip_text_builder.h"
#include "weights_converter/unet2d_builder.h"
#include "weights_converter/unet2d_condition_builder.h"
#include "weights_converter/unet2d_config.h"
#include "weights_converter/unet2d_condition_config.h"
#include "weights_converter/vae_decoder_builder.h"

using namespace diffrt;
using nlohmann::json;

namespace {

json load(const std::string& rel) { return test::load_source_json(rel); }

// openai/clip-vit-large-patch14's text config (Stable Diffusion 1.x's text encoder).
json clip_vit_l14_text() {
  return {{"vocab_size", 49408}, {"hidden_size", 768}, {"intermediate_size", 3072}, {"num_hidden_layers", 12},
          {"num_attention_heads", 12}, {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5}, {"projection_dim", 768}};
}

// google/ddpm-cifar10-32's UNet2DModel config.
json ddpm_cifar10() { return test::ddpm_cifar10_config(); }

void add_tensors(ModelFile& mf, const std::map<std::string, TensorShape>& shapes, const std::string& prefix, DType dt) {
  for (const auto& [name, shape] : shapes) {
    TensorInfo t;
    t.name = prefix + name;
    t.dtype = dt;
    t.shape = shape;
    t.nbytes = t.numel() * dtype_size(dt);
    mf.tensors.push_back(std::move(t));
  }
}

// Stable Diffusion 1.5 from its published configs, each component in its dtype; no weight bytes.
ModelFile sd15(DType unet, DType vae, DType text) {
  ModelFile mf;
  mf.family = "unet2d_condition";
  const UNet2DConditionConfig uc =
      parse_unet2d_condition_config(load("tests/fixtures/sd_real/sd15_unet_config.json"), "sd15 unet");
  mf.graph = build_unet2d_condition_graph(uc);
  mf.graph.dtype = unet;
  add_tensors(mf, unet2d_condition_expected_tensors(uc), "", unet);
  const AutoencoderKLConfig vc = parse_autoencoder_kl_config(load("tests/fixtures/sd_real/sd_vae_config.json"), "sd vae");
  mf.vae.graph = build_vae_decoder_graph(vc);
  mf.vae.graph.dtype = vae;
  mf.vae.scaling_factor = vc.scaling_factor;
  add_tensors(mf, vae_decoder_expected_tensors(vc), "vae.", vae);
  const ClipTextConfig tc = parse_clip_text_config(clip_vit_l14_text(), "clip-vit-large-patch14");
  mf.text_encoder.graph = build_clip_text_graph(tc);
  mf.text_encoder.graph.dtype = text;
  add_tensors(mf, clip_text_expected_tensors(tc), "text_encoder.", text);
  mf.has_tokenizer = true;
  mf.tokenizer.max_length = 77;
  return mf;
}

ModelFile cifar() {
  ModelFile mf;
  mf.family = "unet2d";
  const UNet2DConfig c = parse_unet2d_config(ddpm_cifar10(), "ddpm-cifar10-32");
  mf.graph = build_unet2d_graph(c);
  mf.graph.dtype = DType::F32;
  add_tensors(mf, unet2d_expected_tensors(c), "", DType::F32);
  return mf;
}

// ---- the planner's figures, phase by phase ---------------------------------------------------------------

// What one CudaExecutor of `g` allocates (cuda_executor.cpp's constructor, buffer by buffer).
uint64_t executor_figure(const Graph& g, const MemoryPlan& p) {
  const uint64_t es = dtype_size(g.dtype);
  uint64_t b = std::max<uint64_t>(plan_device_arena(g, p, g.dtype).bytes, 256);
  if (g.sample >= 0) b += p.shapes[size_t(g.sample)].numel() * es;
  if (g.input_ids >= 0) b += p.shapes[size_t(g.input_ids)].numel() * 4;
  if (g.timestep >= 0) b += uint64_t(p.n) * 4;
  if (g.class_labels >= 0) b += uint64_t(p.n) * 4;
  if (g.context >= 0) b += p.shapes[size_t(g.context)].numel() * es;
  return b + group_norm_workspace_for(g, p);
}

// The CudaContext's scratch for `g`: cuDNN's padded input (one batch chunk) and cuBLASLt's silu(x).
void scratch_figure(const Graph& g, const MemoryPlan& p, uint64_t* pad, uint64_t* silu) {
  const uint64_t es = dtype_size(g.dtype);
  for (const Node& nd : g.nodes) {
    const ValueShape& in = p.shapes[size_t(nd.inputs[0])];
    if (const auto* c = std::get_if<Conv2dAttrs>(&nd.attrs)) {
      Conv2dParams cp;
      cp.n = int(in.n); cp.h = int(in.h); cp.w_in = int(in.w); cp.cin = c->cin; cp.cout = c->cout;
      cp.kh = c->kh; cp.kw = c->kw; cp.stride = c->stride;
      cp.pad_top = c->pad_top; cp.pad_left = c->pad_left; cp.pad_bottom = c->pad_bottom; cp.pad_right = c->pad_right;
      const int chunk = conv_batch_chunks(cp).front().count;
      *pad = std::max<uint64_t>(*pad, conv_padded_input_elems(cp, chunk) * es);
    } else if (const auto* l = std::get_if<LinearAttrs>(&nd.attrs)) {
      if (l->silu_input) *silu = std::max<uint64_t>(*silu, in.numel() * es);
    }
  }
}

struct Figures {
  uint64_t text = 0, loop = 0, decode = 0;
  uint64_t largest() const { return std::max({text, loop, decode}); }
};

Figures cuda_figures(const ModelFile& mf, const engine::Job& job) {
  const SampleRequest& r = job.req;
  PlanLimits lim;
  lim.max_arena_bytes = uint64_t(1) << 62;
  uint64_t pad = 0, silu = 0;
  Figures f;
  const MemoryPlan up = plan_memory(mf.graph, PlanInputs{job.model_batch, r.height, r.width, job.context_len}, lim);
  scratch_figure(mf.graph, up, &pad, &silu);
  const int steps = effective_steps(r);
  // The sampler (cuda_sampler.cpp): x fp32, the coefficient and timestep tables, the step counter, and the
  // precomputed time embeddings of every step (their timesteps too).
  uint64_t sampler = uint64_t(r.batch) * r.height * r.width * r.channels * 4 + uint64_t(steps) * sizeof(StepCoeffs) +
                     uint64_t(steps) * 4 + 256;
  for (const Node& nd : mf.graph.nodes)
    if (const auto* a = std::get_if<TimeEmbeddingAttrs>(&nd.attrs)) {
      sampler += uint64_t(steps) * job.model_batch * (uint64_t(a->out_dim) * dtype_size(mf.graph.dtype) + 4);
      break;
    }
  f.loop = executor_figure(mf.graph, up) + sampler;
  if (job.decode) {
    const MemoryPlan vp = plan_memory(mf.vae.graph, PlanInputs{r.batch, r.height, r.width, 0}, lim);
    scratch_figure(mf.vae.graph, vp, &pad, &silu);
    f.decode = executor_figure(mf.vae.graph, vp);
  }
  if (job.text_rows > 0) {
    PlanInputs tin;
    tin.n = job.text_rows; tin.h = 1; tin.w = 1; tin.seq_len = job.context_len;
    const MemoryPlan tp = plan_memory(mf.text_encoder.graph, tin, lim);
    scratch_figure(mf.text_encoder.graph, tp, &pad, &silu);
    f.text = executor_figure(mf.text_encoder.graph, tp);
  }
  // The context's workspaces (configured caps) and scratch live through every phase.
  const uint64_t ctx = kConvWorkspaceCap + pad + kGemmWorkspaceBytes + silu;
  f.loop += ctx;
  if (f.decode) f.decode += ctx;
  if (f.text) f.text += ctx;
  return f;
}

engine::Job sd_job(int batch, int side, int prompts, bool decode) {
  engine::Job j;
  j.req.sampler = SamplerKind::Ddim;
  j.req.steps = 50;
  j.req.batch = batch * std::max(prompts, 1);
  j.req.height = j.req.width = side / 8;
  j.req.channels = 4;
  j.req.guidance_scale = 7.5f;
  j.req.text_cfg = true;
  j.text = true;
  j.model_batch = model_batch(j.req);
  j.context_len = 77;
  j.text_rows = prompts * 2;  // prompts and their negatives
  j.decode = decode;
  return j;
}

void expect_upper_bound(const ModelFile& mf, const engine::Job& job, const std::string& what) {
  const Figures f = cuda_figures(mf, job);
  const uint64_t est = engine::estimate_cuda_bytes(mf, job);
  EXPECT_GE(est, f.loop) << what << ": the denoising loop";
  EXPECT_GE(est, f.decode) << what << ": the VAE decode";
  EXPECT_GE(est, f.text) << what << ": the text encoder";
  // Tight: alignment (256 bytes a buffer) is all the estimate may add.
  EXPECT_LE(est, f.largest() + (uint64_t(1) << 20)) << what << ": the estimate overshoots the largest phase";
}

}  // namespace

TEST(MemoryEstimate, Sd15MixedPrecisionCoversEveryPhase) {
  const ModelFile mf = sd15(DType::F16, DType::F32, DType::F16);
  for (int batch : {1, 4})
    for (int prompts : {0, 1, 2})
      for (bool decode : {true, false}) {
        const engine::Job job = sd_job(batch, 512, prompts, decode);
        expect_upper_bound(mf, job, "sd15 512 batch " + std::to_string(batch) + " prompts " + std::to_string(prompts) +
                                        (decode ? " decode" : " latents"));
      }
  // Batch 16 at 1024x1024: the VAE's 1024x1024x128 activations hold 2^31 elements, so cuDNN runs them in batch
  // chunks; the padding scratch is one chunk's.
  expect_upper_bound(mf, sd_job(16, 1024, 1, true), "sd15 1024 batch 16");
}

TEST(MemoryEstimate, PhasesAreSizedInTheirOwnDtype) {
  // The fp32 VAE beside an fp16 UNet decodes in fp32: its phase is larger than an all-fp16 file's.
  const ModelFile mixed = sd15(DType::F16, DType::F32, DType::F16), half = sd15(DType::F16, DType::F16, DType::F16);
  const engine::Job job = sd_job(4, 512, 1, true);
  const Figures fm = cuda_figures(mixed, job), fh = cuda_figures(half, job);
  EXPECT_GT(fm.decode, fh.decode);
  EXPECT_EQ(fm.loop, fh.loop);
  EXPECT_GT(engine::estimate_cuda_bytes(mixed, job), engine::estimate_cuda_bytes(half, job));
  // The report's VAE phase matches the executor figure in the VAE's dtype.
  CudaMemoryQuery q;
  q.batch = 4; q.h = q.w = 64; q.cfg = true; q.steps = 50; q.context_len = 77; q.text_rows = 2;
  const CudaMemoryReport r = cuda_memory_report(mixed, q);
  EXPECT_EQ(r.dtype, DType::F16);
  EXPECT_EQ(r.vae_dtype, DType::F32);
  EXPECT_EQ(r.text_dtype, DType::F16);
  EXPECT_GT(r.text_total_bytes, 0u);
  EXPECT_EQ(r.peak_bytes, std::max({r.total_bytes, r.vae_total_bytes, r.text_total_bytes}));
  // Overriding the dtype sizes every graph in it.
  q.dtype = DType::F16;
  EXPECT_LT(cuda_memory_report(mixed, q).vae_total_bytes, r.vae_total_bytes);
}

TEST(MemoryEstimate, TextEncoderPhaseCountedForPromptsOnly) {
  const ModelFile mf = sd15(DType::F16, DType::F32, DType::F16);
  // A large prompt batch at a small image: the text encoder (256 rows x 77 tokens) is the largest phase.
  engine::Job job = sd_job(1, 64, 128, false);
  const Figures f = cuda_figures(mf, job);
  ASSERT_GT(f.text, f.loop);
  EXPECT_GE(engine::estimate_cuda_bytes(mf, job), f.text);
  job.text_rows = 0;  // prompt embeddings given: no text encoder run
  EXPECT_LT(engine::estimate_cuda_bytes(mf, job), f.text);
}

TEST(MemoryEstimate, CifarDdpm) {
  const ModelFile mf = cifar();
  engine::Job job;
  job.req.sampler = SamplerKind::Ddpm;
  job.req.steps = 1000;
  job.req.batch = 64;
  job.req.height = job.req.width = 32;
  job.req.channels = 3;
  job.model_batch = 64;
  expect_upper_bound(mf, job, "cifar ddpm batch 64");
  job.req.batch = job.model_batch = 1;
  expect_upper_bound(mf, job, "cifar ddpm batch 1");
}

// The CPU estimate against the CPU planner: the loop's arena and conv scratch, the text encoder's and the VAE's.
TEST(MemoryEstimate, CpuCoversTheCpuPlanner) {
  const ModelFile mf = sd15(DType::F16, DType::F32, DType::F16);
  PlanLimits lim;
  lim.max_arena_bytes = uint64_t(1) << 62;
  for (int prompts : {1, 3}) {
    const engine::Job job = sd_job(2, 512, prompts, true);
    const uint64_t est = engine::estimate_cpu_bytes(mf, job);
    const MemoryPlan up = plan_memory(mf.graph, PlanInputs{job.model_batch, 64, 64, 77}, lim);
    EXPECT_GE(est, (up.arena_elems + up.conv_scratch_elems) * 4);
    const MemoryPlan vp = plan_memory(mf.vae.graph, PlanInputs{job.req.batch, 64, 64, 0}, lim);
    EXPECT_GE(est, (vp.arena_elems + vp.conv_scratch_elems) * 4);
    PlanInputs tin;
    tin.n = job.text_rows; tin.h = 1; tin.w = 1; tin.seq_len = 77;
    const MemoryPlan tp = plan_memory(mf.text_encoder.graph, tin, lim);
    EXPECT_GE(est, (tp.arena_elems + tp.conv_scratch_elems + tp.shapes[size_t(mf.text_encoder.graph.output)].numel()) * 4);
  }
}
