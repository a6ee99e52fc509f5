// Prompt encoding (contracts in text_encoder.h). Tested by tests/clip_text_parity_test.cpp (vs transformers'
// CLIPTokenizer and CLIPTextModel) and tests/sd_prompt_parity_test.cpp (vs StableDiffusionPipeline(prompt=...)).
#include "runtime/text_encoder.h"

#include "base/error.h"
#include "runtime/tokenizer/clip_tokenizer.h"

namespace diffrt {

std::vector<int32_t> tokenize_prompts(const ModelFile& mf, const std::vector<std::string>& prompts) {
  if (!mf.has_tokenizer || !mf.text_encoder.present())
    fail(ErrorCode::InvalidArgument, "this model file has no text encoder and tokenizer: give prompt embeddings instead "
                                     "(or convert the pipeline folder with its text_encoder/ and tokenizer/)");
  ClipTokenizer tok(mf.tokenizer);
  std::vector<int32_t> ids;
  ids.reserve(prompts.size() * size_t(tok.max_length()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int32_t> row;
    try {
      row = tok.encode(prompts[i]);
    } catch (const Error& e) {
      throw Error(e.code(), "prompt " + std::to_string(i + 1) + ": " + e.what());
    }
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return ids;
}

TextEmbeds encode_ids_cpu(const ModelFile& mf, const CpuWeights& weights, const std::vector<int32_t>& ids, int batch,
                          int len) {
  const Graph& g = mf.text_encoder.graph;
  if (!mf.text_encoder.present()) fail(ErrorCode::InvalidArgument, "this model file has no text encoder");
  if (batch < 1 || len < 1 || ids.size() != size_t(batch) * size_t(len))
    fail(ErrorCode::InvalidArgument, "token ids do not match [" + std::to_string(batch) + ", " + std::to_string(len) + "]");
  PlanInputs in;
  in.n = batch; in.h = 1; in.w = 1; in.seq_len = len;
  CpuExecutor ex(mf, weights, g, in);
  TextEmbeds e;
  e.batch = batch; e.len = len; e.dim = g.out_channels;
  e.data.resize(ex.plan().shapes[size_t(g.output)].numel());
  GraphInputs gi;
  gi.input_ids = ids.data();
  ex.run(gi, e.data.data());
  return e;
}

namespace {

// Rows of e repeated: each of the batch rows `copies` times, adjacent.
TextEmbeds repeat_rows(const TextEmbeds& e, int copies) {
  if (copies == 1) return e;
  TextEmbeds r;
  r.batch = e.batch * copies; r.len = e.len; r.dim = e.dim;
  const size_t row = size_t(e.len) * size_t(e.dim);
  r.data.reserve(size_t(r.batch) * row);
  for (int b = 0; b < e.batch; ++b)
    for (int k = 0; k < copies; ++k)
      r.data.insert(r.data.end(), e.data.begin() + std::ptrdiff_t(b * row), e.data.begin() + std::ptrdiff_t((b + 1) * row));
  return r;
}

}  // namespace

PromptEmbeds encode_prompts(const ModelFile& mf, const std::vector<std::string>& prompts,
                            const std::vector<std::string>& negatives, bool with_negative, int per_prompt,
                            const TextEncodeFn& encode) {
  if (prompts.empty()) fail(ErrorCode::InvalidArgument, "no prompt given");
  if (per_prompt < 1) fail(ErrorCode::InvalidArgument, "images per prompt must be >= 1");
  if (!negatives.empty() && negatives.size() != 1 && negatives.size() != prompts.size())
    fail(ErrorCode::InvalidArgument, std::to_string(negatives.size()) + " negative prompts for " +
                                         std::to_string(prompts.size()) + " prompts (give one, or one per prompt)");
  std::vector<std::string> all = prompts;
  if (with_negative)
    for (size_t i = 0; i < prompts.size(); ++i)
      all.push_back(negatives.empty() ? std::string() : negatives.size() == 1 ? negatives[0] : negatives[i]);
  const std::vector<int32_t> ids = tokenize_prompts(mf, all);
  const int len = mf.tokenizer.max_length, p = int(prompts.size());
  // One batched run: every row of the text encoder is independent of the others.
  const TextEmbeds both = encode(ids, int(all.size()), len);
  const size_t row = size_t(len) * size_t(both.dim);
  PromptEmbeds out;
  TextEmbeds pos;
  pos.batch = p; pos.len = len; pos.dim = both.dim;
  pos.data.assign(both.data.begin(), both.data.begin() + std::ptrdiff_t(size_t(p) * row));
  out.positive = repeat_rows(pos, per_prompt);
  if (with_negative) {
    TextEmbeds neg;
    neg.batch = p; neg.len = len; neg.dim = both.dim;
    neg.data.assign(both.data.begin() + std::ptrdiff_t(size_t(p) * row), both.data.end());
    out.negative = repeat_rows(neg, per_prompt);
  }
  return out;
}

}  // namespace diffrt
