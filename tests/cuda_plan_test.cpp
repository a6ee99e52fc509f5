// runtime/cuda_plan.h on a CPU machine (no CUDA call): byte arena placement for every dtype (256-byte aligned,
// no two simultaneously live values overlap, fits in the arena) and the memory report's arithmetic.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "runtime/cuda_plan.h"
#include "tests/sd_text_fixture.h"
#include "tests/test_util.h"
#include "weights_converter/converter.h"

using namespace diffrt;
namespace fs = std::filesystem;

namespace {

ModelFile convert(const std::string& name, DType dtype) {
  std::string drt = test::temp_dir("cuda_plan") + "/m.drt";
  ConvertOptions opt;
  opt.input = test::source_path("tests/fixtures/models/" + name);
  opt.output = drt;
  opt.dtype = dtype;
  convert_diffusers(opt);
  return read_model_file(drt);
}

// Values u and v are live at the same time when their [producer, last_use] node intervals intersect.
void check_no_overlap(const Graph& g, const MemoryPlan& p, const DeviceArenaPlan& a, DType dt) {
  std::vector<int> producer(g.values.size(), -1);
  for (size_t k = 0; k < g.nodes.size(); ++k) producer[size_t(g.nodes[k].output)] = int(k);
  const uint64_t es = dtype_size(dt);
  for (size_t u = 0; u < g.values.size(); ++u) {
    if (producer[u] < 0) {
      EXPECT_EQ(a.byte_offset[u], -1) << g.values[u];
      continue;
    }
    ASSERT_GE(a.byte_offset[u], 0) << g.values[u];
    EXPECT_EQ(uint64_t(a.byte_offset[u]) % kDeviceAlignBytes, 0u) << g.values[u];
    const uint64_t ub = uint64_t(a.byte_offset[u]), ue = ub + p.shapes[u].numel() * es;
    EXPECT_LE(ue, a.bytes) << g.values[u];
    for (size_t v = u + 1; v < g.values.size(); ++v) {
      if (producer[v] < 0) continue;
      const int lu = std::max(p.last_use[u], producer[u]), lv = std::max(p.last_use[v], producer[v]);
      const bool live_together = producer[u] <= lv && producer[v] <= lu;
      if (!live_together) continue;
      const uint64_t vb = uint64_t(a.byte_offset[v]), ve = vb + p.shapes[v].numel() * es;
      EXPECT_TRUE(ue <= vb || ve <= ub) << g.values[u] << " overlaps " << g.values[v];
    }
  }
}

}  // namespace

TEST(CudaPlan, ArenaIsAlignedAndNonOverlappingForEveryDtype) {
  for (const char* name : {"cifar_like", "class_cond", "mid_none_noattn", "scale_shift_multihead"}) {
    ModelFile mf = convert(name, DType::F32);
    for (int batch : {1, 3, 8}) {
      MemoryPlan p = plan_memory(mf.graph, batch, 32, 32);  // a multiple of every fixture's downsample factor
      uint64_t prev = 0;
      for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        DeviceArenaPlan a = plan_device_arena(mf.graph, p, dt);
        check_no_overlap(mf.graph, p, a, dt);
        EXPECT_LE(a.bytes, p.naive_elems * dtype_size(dt) + mf.graph.nodes.size() * kDeviceAlignBytes) << name;
        if (dt == DType::F32) prev = a.bytes;
        else EXPECT_LE(a.bytes, prev) << name << " " << dtype_name(dt) << " arena larger than fp32";
      }
    }
  }
}

TEST(CudaPlan, MemoryReport) {
  ModelFile f32 = convert("cifar_like", DType::F32), f16 = convert("cifar_like", DType::F16);
  CudaMemoryReport r = cuda_memory_report(f32, DType::F32, 4, 16, 16, false, 50);
  EXPECT_EQ(r.model_batch, 4);
  EXPECT_GT(r.weight_bytes, 0u);
  EXPECT_GE(r.weight_bytes, f32.data.size() / 2);
  EXPECT_GT(r.arena_bytes, 0u);
  EXPECT_LE(r.arena_bytes, r.naive_activation_bytes);
  EXPECT_GT(r.group_norm_workspace_bytes, 0u);
  EXPECT_EQ(r.total_bytes, r.weight_bytes + r.arena_bytes + r.input_bytes + r.group_norm_workspace_bytes +
                               r.conv_workspace_bytes + r.gemm_workspace_bytes + r.sampler_bytes);
  // fp16 halves weights and (roughly) activations; the model file's own dtype does not matter.
  CudaMemoryReport h = cuda_memory_report(f32, DType::F16, 4, 16, 16, false, 50);
  CudaMemoryReport h2 = cuda_memory_report(f16, DType::F16, 4, 16, 16, false, 50);
  EXPECT_EQ(h.weight_bytes, h2.weight_bytes);
  EXPECT_LT(h.weight_bytes, r.weight_bytes);
  EXPECT_LT(h.arena_bytes, r.arena_bytes);
  // CFG doubles the model batch.
  CudaMemoryReport c = cuda_memory_report(f32, DType::F32, 4, 16, 16, true, 50);
  EXPECT_EQ(c.model_batch, 8);
  EXPECT_GT(c.arena_bytes, r.arena_bytes);
  EXPECT_THROW(cuda_memory_report(f32, DType::F32, 0, 16, 16), Error);
  EXPECT_THROW(cuda_memory_report(f32, DType::F32, 1, 15, 16), Error);  // not a multiple of the downsample factor
}

// Stable-Diffusion-style model file (UNet with a text context + VAE decoder): the arena check on both graphs,
// the context in the inputs, the VAE decode as its own phase.
TEST(CudaPlan, TextModelAndVaeDecoder) {
  ConvertOptions opt;
  opt.input = test::source_path("tests/fixtures/sd/sd1_tiny/pipeline");
  opt.output = test::temp_dir("cuda_plan_sd") + "/m.drt";
  convert_diffusers(opt);
  ModelFile mf = read_model_file(opt.output);
  ASSERT_GE(mf.graph.context, 0);
  ASSERT_TRUE(mf.vae.present());
  for (int len : {77, 5}) {
    MemoryPlan p = plan_memory(mf.graph, PlanInputs{2, 8, 8, len});
    MemoryPlan v = plan_memory(mf.vae.graph, PlanInputs{2, 8, 8, 0});
    for (DType dt : {DType::F32, DType::F16}) {
      check_no_overlap(mf.graph, p, plan_device_arena(mf.graph, p, dt), dt);
      check_no_overlap(mf.vae.graph, v, plan_device_arena(mf.vae.graph, v, dt), dt);
    }
  }
  CudaMemoryReport r = cuda_memory_report(mf, DType::F16, 1, 8, 8, true, 50, 77);
  EXPECT_EQ(r.model_batch, 2);
  EXPECT_EQ(r.context_len, 77);
  EXPECT_EQ(r.total_bytes, r.weight_bytes + r.arena_bytes + r.input_bytes + r.group_norm_workspace_bytes +
                               r.conv_workspace_bytes + r.gemm_workspace_bytes + r.sampler_bytes);
  // inputs: sample [2,8,8,4] + timesteps [2] + context [2,77,D], each 256-byte aligned, fp16.
  auto al = [](uint64_t b) { return (b + 255) / 256 * 256; };
  EXPECT_EQ(r.input_bytes, al(2 * 8 * 8 * 4 * 2) + al(2 * 4) + al(uint64_t(2) * 77 * mf.graph.context_dim * 2));
  EXPECT_GT(r.vae_arena_bytes, 0u);
  EXPECT_EQ(r.vae_input_bytes, al(1 * 8 * 8 * 4 * 2));
  EXPECT_EQ(r.vae_total_bytes, r.weight_bytes + r.conv_workspace_bytes + r.gemm_workspace_bytes + r.vae_arena_bytes +
                                   r.vae_input_bytes + r.vae_group_norm_workspace_bytes);
  EXPECT_EQ(r.peak_bytes, std::max(r.total_bytes, r.vae_total_bytes));
  CudaMemoryReport r5 = cuda_memory_report(mf, DType::F16, 1, 8, 8, true, 50, 5);
  EXPECT_LT(r5.input_bytes, r.input_bytes);
  EXPECT_THROW(cuda_memory_report(mf, DType::F16, 1, 8, 8, true, 50, 0), Error);  // a text UNet needs a length
  // A model without a text context or VAE rejects a context length and reports no VAE phase.
  ModelFile px = convert("cifar_like", DType::F32);
  EXPECT_THROW(cuda_memory_report(px, DType::F32, 1, 16, 16, false, 50, 77), Error);
  CudaMemoryReport rp = cuda_memory_report(px, DType::F32, 1, 16, 16, false, 50);
  EXPECT_EQ(rp.vae_total_bytes, 0u);
  EXPECT_EQ(rp.peak_bytes, rp.total_bytes);
}

// Each graph in its stored dtype (mixed precision per component) and the text encoder as a phase of its own.
TEST(CudaPlan, StoredDtypesAndTextEncoderPhase) {
  ConvertOptions opt;
  opt.input = test::assemble_text_pipeline("sd1", "cuda_plan_text");
  opt.output = test::temp_dir("cuda_plan_text_m") + "/m.drt";
  opt.dtype = DType::F16;  // UNet and text encoder fp16, the VAE fp32 (force_upcast)
  convert_diffusers(opt);
  const ModelFile mf = read_model_file(opt.output);
  CudaMemoryQuery q;
  q.batch = 2; q.h = q.w = 8; q.cfg = true; q.steps = 10; q.context_len = 77;
  const CudaMemoryReport none = cuda_memory_report(mf, q);
  EXPECT_EQ(none.dtype, DType::F16);
  EXPECT_EQ(none.vae_dtype, DType::F32);
  EXPECT_EQ(none.text_dtype, DType::F16);
  uint64_t stored = 0;
  for (const TensorInfo& t : mf.tensors) stored += (t.nbytes + 255) / 256 * 256;
  EXPECT_EQ(none.weight_bytes, stored) << "weights as stored, each tensor in its own dtype";
  EXPECT_GE(none.weight_bytes, mf.data.size());
  EXPECT_EQ(none.text_total_bytes, 0u);
  // The VAE phase is sized in fp32: its arena equals an fp32 plan's.
  const MemoryPlan vp = plan_memory(mf.vae.graph, PlanInputs{2, 8, 8, 0});
  EXPECT_EQ(none.vae_arena_bytes, std::max<uint64_t>(plan_device_arena(mf.vae.graph, vp, DType::F32).bytes, 256));
  q.text_rows = 4;
  const CudaMemoryReport text = cuda_memory_report(mf, q);
  EXPECT_GT(text.text_arena_bytes, 0u);
  EXPECT_EQ(text.text_input_bytes, ((4 * 77 * 4 + 255) / 256) * 256u);  // token ids, int32 (no GroupNorm)
  EXPECT_EQ(text.text_total_bytes, text.weight_bytes + text.conv_workspace_bytes + text.gemm_workspace_bytes +
                                       text.text_arena_bytes + text.text_input_bytes);
  EXPECT_EQ(text.peak_bytes, std::max({text.total_bytes, text.vae_total_bytes, text.text_total_bytes}));
  EXPECT_EQ(text.total_bytes, none.total_bytes) << "the loop does not change";
  q.decode = false;
  EXPECT_EQ(cuda_memory_report(mf, q).vae_total_bytes, 0u);
  // A file without a text encoder cannot run one.
  ModelFile px = convert("cifar_like", DType::F32);
  CudaMemoryQuery qp;
  qp.h = qp.w = 16;
  qp.text_rows = 1;
  EXPECT_THROW(cuda_memory_report(px, qp), Error);
}
