// The CLIP text encoder on the CUDA backend (tests/fixtures/sd/clip_tiny_{sd1,sd2} inside the sd1_text pipeline,
// converted here): embedding, causal self-attention, quick_gelu / gelu, LayerNorms through the executor.
//   * fp32: GPU vs the CPU executor and vs transformers' last_hidden_state (rel L2 <= 1e-5, TF32 off); compare
//     mode agrees node by node and must have seen embedding, causal attention and activation nodes;
//   * fp16 / bf16 vs the CPU fp32 model (<= 1e-2 / 3e-2);
//   * batch rows are independent (a prompt's row is the same alone or in a batch of 4);
//   * token ids outside the vocabulary are refused on the host before upload;
//   * prompt -> image: encode_prompts on the GPU + the CUDA sampling loop + VAE decode reproduce
//     StableDiffusionPipeline(prompt=...) (sd1_text runs, torch RNG; 1e-3 max abs on [0, 1]).
// Every test skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "base/error.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/cuda/cuda_latent.h"
#include "runtime/cuda/cuda_text.h"
#include "runtime/latent_pipeline.h"
#include "base/layout.h"
#include "base/npy.h"
#include "runtime/text_encoder.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/sd_text_fixture.h"
#include "weights_converter/converter.h"

namespace fs = std::filesystem;

namespace diffrt::test {
namespace {

const ModelFile& converted(const std::string& clip, DType dtype = DType::F32) {
  return converted_once(clip + "/" + dtype_name(dtype), [&] {
    ConvertOptions opt;
    opt.input = assemble_text_pipeline(clip, std::string("gpu_te_") + clip + dtype_name(dtype));
    opt.output = opt.input + "/../m.drt";
    opt.dtype = dtype;
    return opt;
  }).file;
}

std::vector<std::string> prompts(const std::string& clip) {
  std::ifstream f(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/prompts.json"));
  return nlohmann::json::parse(f).get<std::vector<std::string>>();
}

TEST(TextEncoderCuda, Fp32MatchesCpuAndTransformers) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (const std::string clip : {"sd1", "sd2"}) {
    const ModelFile& mf = converted(clip);
    CudaWeights w(mf);
    CpuWeights cw(mf);
    const std::vector<std::string> ps = prompts(clip);
    const std::vector<int32_t> ids = tokenize_prompts(mf, ps);
    const int n = int(ps.size()), len = mf.tokenizer.max_length;
    const TextEmbeds gpu = encode_ids_cuda(mf, w, ctx, ids, n, len), cpu = encode_ids_cpu(mf, cw, ids, n, len);
    const std::vector<float> want =
        read_npy(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/last_hidden_state.npy")).as_f32();
    ASSERT_EQ(gpu.data.size(), want.size());
    const double vs_cpu = rel_l2(gpu.data.data(), cpu.data.data(), cpu.data.size());
    const double vs_tf = rel_l2(gpu.data.data(), want.data(), want.size());
    std::printf("[cuda clip] %s fp32: rel_l2 vs cpu %.3g, vs transformers %.3g\n", clip.c_str(), vs_cpu, vs_tf);
    EXPECT_LE(vs_cpu, 1e-5) << clip;
    EXPECT_LE(vs_tf, 1e-5) << clip;
  }
}

TEST(TextEncoderCuda, CompareModeAllNodesAgree) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const ModelFile& mf = converted("sd2");
  CudaWeights w(mf);
  const std::vector<int32_t> ids = tokenize_prompts(mf, prompts("sd2"));
  PlanInputs in;
  in.n = int(ids.size() / 77); in.h = 1; in.w = 1; in.seq_len = 77;
  CudaExecutor ex(mf, w, ctx, mf.text_encoder.graph, in);
  GraphInputs gi;
  gi.input_ids = ids.data();
  const CompareReport rep = ex.compare_with_cpu(gi, 1e-4);
  EXPECT_LT(rep.first_bad, 0) << rep.summary();
  std::set<std::string> ops;
  for (const NodeCompare& nc : rep.nodes) ops.insert(nc.op);
  for (const char* op : {"embedding", "attention", "activation", "layer_norm", "linear"}) EXPECT_TRUE(ops.count(op)) << op;
}

TEST(TextEncoderCuda, HalfPrecisionWithinBound) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  for (DType t : {DType::F16, DType::BF16})
    for (const std::string clip : {"sd1", "sd2"}) {
      const ModelFile& ref = converted(clip);
      CpuWeights cw(ref);
      const ModelFile& mf = converted(clip, t);
      CudaWeights w(mf);
      const std::vector<int32_t> ids = tokenize_prompts(mf, prompts(clip));
      const int n = int(ids.size() / 77);
      const TextEmbeds gpu = encode_ids_cuda(mf, w, ctx, ids, n, 77), cpu = encode_ids_cpu(ref, cw, ids, n, 77);
      const double e = rel_l2(gpu.data.data(), cpu.data.data(), cpu.data.size());
      std::printf("[cuda clip] %s %s: rel_l2 vs cpu fp32 %.3g\n", clip.c_str(), dtype_name(t), e);
      EXPECT_LE(e, t == DType::F16 ? 1e-2 : 3e-2) << clip << " " << dtype_name(t);
    }
}

TEST(TextEncoderCuda, RowsAreIndependentAndBadIdsRefused) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const ModelFile& mf = converted("sd1");
  CudaWeights w(mf);
  const std::vector<int32_t> ids = tokenize_prompts(mf, prompts("sd1"));
  const TextEmbeds all = encode_ids_cuda(mf, w, ctx, ids, 4, 77);
  const std::vector<int32_t> row2(ids.begin() + 2 * 77, ids.begin() + 3 * 77);
  const TextEmbeds one = encode_ids_cuda(mf, w, ctx, row2, 1, 77);
  const size_t row = size_t(77) * size_t(all.dim);
  EXPECT_LE(rel_l2(one.data.data(), all.data.data() + 2 * row, row), 1e-6);
  std::vector<int32_t> bad = row2;
  bad[5] = 1514;  // == vocab size
  try {
    encode_ids_cuda(mf, w, ctx, bad, 1, 77);
    ADD_FAILURE() << "accepted an out-of-range token id";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
  }
}

TEST(TextEncoderCuda, PromptPipelinesMatchStableDiffusionPipeline) {
  DIFFRT_SKIP_WITHOUT_GPU();
  CudaContext ctx;
  const ModelFile& mf = converted("sd1");
  CudaWeights w(mf);
  const std::vector<fs::path> dirs = sorted_run_dirs(source_path("tests/fixtures/sd/sd1_text/pipelines"));
  int runs = 0;
  for (const fs::path& d : dirs) {
    const PromptRun r =
        prompt_run(d, mf, [&](const std::vector<int32_t>& ids, int b, int l) { return encode_ids_cuda(mf, w, ctx, ids, b, l); });
    const SampleRequest& req = r.req;
    const PromptEmbeds& pe = r.pe;
    SchedulerConfig sched = scheduler_config_from_json(r.meta["effective_scheduler_config"], "meta.json");
    const std::vector<float> context = model_context(mf.graph, pe.positive, r.guided ? &pe.negative : nullptr, r.guided);
    const std::vector<float> lat = sample_latents_cuda(mf, w, ctx, sched, req, context, pe.positive.len, {});
    const std::vector<float> img = to_image_01(decode_latents_cuda(mf, w, ctx, lat, req.batch, req.height, req.width));
    const std::vector<float> want = read_npy((d / "images.npy").string()).as_f32();
    ASSERT_EQ(img.size(), want.size()) << d;
    const double err = max_abs_diff(img.data(), want.data(), want.size());
    std::printf("[cuda sd prompt] %-26s images max_abs %.3g\n", d.filename().c_str(), err);
    EXPECT_LE(err, 1e-3) << d;
    ++runs;
  }
  EXPECT_EQ(runs, 3);
}

}  // namespace
}  // namespace diffrt::test
