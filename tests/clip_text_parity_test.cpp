// CLIP text encoder + tokenizer parity on the CPU backend against transformers 4.39.3
// (tests/fixtures/sd/clip_tiny_{sd1,sd2}, made by tests/fixtures/make_clip_fixtures.py): a pipeline folder with
// the text encoder is converted, then
//  * the model file's tokenizer gives transformers' input_ids for the fixture prompts (short, empty,
//    truncated at 77, "!!!" with SD 2's "!" pad token, <|endoftext|> inside the text, Unicode);
//  * the text encoder graph gives CLIPTextModel's last_hidden_state (fp32, rel L2 <= 1e-5), with
//    quick_gelu (SD 1) and gelu (SD 2), causal mask, pre-LayerNorm blocks, final_layer_norm;
//  * the stored tokenizer equals the one read from the folder, and the text encoder graph has the expected
//    structure (embedding, fused causal self-attention, activation of the config).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "base/npy.h"
#include "runtime/text_encoder.h"
#include "tests/sd_text_fixture.h"
#include "weights_converter/converter.h"
#include "weights_converter/tokenizer_import.h"

namespace diffrt::test {
namespace {

const ModelFile& converted(const std::string& clip) {
  static std::map<std::string, ModelFile> cache;
  auto it = cache.find(clip);
  if (it != cache.end()) return it->second;
  ConvertOptions opt;
  opt.input = assemble_text_pipeline(clip, "clip_parity_" + clip);
  opt.output = opt.input + "/../m.drt";
  ConvertReport r = convert_diffusers(opt);
  EXPECT_FALSE(r.text_encoder_source.empty());
  return cache.emplace(clip, read_model_file(opt.output)).first->second;
}

std::vector<std::string> prompts(const std::string& clip) {
  std::ifstream f(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/prompts.json"));
  return nlohmann::json::parse(f).get<std::vector<std::string>>();
}

TEST(ClipTextParity, TokenizerIdsMatchTransformers) {
  for (const std::string clip : {"sd1", "sd2"}) {
    const ModelFile& mf = converted(clip);
    ASSERT_TRUE(mf.has_tokenizer);
    const std::vector<int32_t> got = tokenize_prompts(mf, prompts(clip));
    const std::vector<int64_t> want =
        read_npy(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/input_ids.npy")).as_i64();
    ASSERT_EQ(got.size(), want.size()) << clip;
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += int64_t(got[i]) != want[i];
    EXPECT_EQ(bad, 0) << clip;
    EXPECT_EQ(mf.tokenizer.pad_id, clip == "sd1" ? 1513 : 0) << clip;
  }
}

TEST(ClipTextParity, LastHiddenStateMatchesTransformers) {
  for (const std::string clip : {"sd1", "sd2"}) {
    const ModelFile& mf = converted(clip);
    CpuWeights w(mf);
    const std::vector<std::string> ps = prompts(clip);
    const TextEmbeds e = encode_ids_cpu(mf, w, tokenize_prompts(mf, ps), int(ps.size()), mf.tokenizer.max_length);
    const std::vector<float> want =
        read_npy(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/last_hidden_state.npy")).as_f32();
    ASSERT_EQ(e.data.size(), want.size());
    const double rel = rel_l2(e.data.data(), want.data(), want.size());
    const double mx = max_abs_diff(e.data.data(), want.data(), want.size());
    std::printf("[clip text] %s (%s) rel_l2 %.3g max_abs %.3g\n", clip.c_str(),
                mf.text_encoder.config.value("hidden_act", "?").c_str(), rel, mx);
    EXPECT_LE(rel, 1e-5) << clip;
  }
}

TEST(ClipTextParity, StoredTokenizerAndGraph) {
  for (const std::string clip : {"sd1", "sd2"}) {
    const ModelFile& mf = converted(clip);
    const ClipTokenizerSpec dir = load_clip_tokenizer_dir(source_path("tests/fixtures/sd/clip_tiny_" + clip + "/tokenizer"));
    EXPECT_EQ(mf.tokenizer.vocab, dir.vocab);
    EXPECT_EQ(mf.tokenizer.merges, dir.merges);
    EXPECT_EQ(mf.tokenizer.added.size(), dir.added.size());
    EXPECT_EQ(mf.tokenizer.max_length, 77);
    const Graph& g = mf.text_encoder.graph;
    EXPECT_GE(g.input_ids, 0);
    EXPECT_EQ(g.sample, -1);
    EXPECT_EQ(g.out_channels, mf.graph.context_dim);
    int emb = 0, causal = 0, act = 0;
    for (const Node& n : g.nodes) {
      emb += std::holds_alternative<EmbeddingAttrs>(n.attrs);
      if (const auto* a = std::get_if<AttentionAttrs>(&n.attrs)) causal += a->causal;
      if (const auto* a = std::get_if<ActivationAttrs>(&n.attrs)) {
        EXPECT_EQ(a->kind, clip == "sd1" ? ActivationKind::QuickGelu : ActivationKind::Gelu);
        ++act;
      }
    }
    EXPECT_EQ(emb, 1);
    EXPECT_EQ(causal, 2);  // one per layer
    EXPECT_EQ(act, 2);
  }
}

}  // namespace
}  // namespace diffrt::test
