// The model file's tokenizer section (layout in tokenizer_json.h). Tested by tests/text_encoder_format_test.cpp.
#include "model/tokenizer_json.h"

#include "base/error.h"

namespace diffrt {

using nlohmann::json;

json tokenizer_to_json(const ClipTokenizerSpec& s) {
  json merges = json::array();
  for (const auto& m : s.merges) merges.push_back(m.first + " " + m.second);
  json added = json::array();
  for (const ClipAddedToken& a : s.added) added.push_back({{"content", a.content}, {"id", a.id}, {"special", a.special}});
  return {{"type", "clip_bpe"},
          {"vocab", s.vocab},
          {"merges", merges},
          {"added_tokens", added},
          {"bos_id", s.bos_id},
          {"eos_id", s.eos_id},
          {"pad_id", s.pad_id},
          {"unk_id", s.unk_id},
          {"max_length", s.max_length},
          {"padding_side", s.pad_left ? "left" : "right"},
          {"truncation_side", s.truncate_left ? "left" : "right"},
          {"split_special_tokens", s.split_special_tokens}};
}

ClipTokenizerSpec tokenizer_from_json(const json& j, const JsonCheck& c, const std::string& p) {
  c.object(j, p);
  c.only_keys(j, p, {"type", "vocab", "merges", "added_tokens", "bos_id", "eos_id", "pad_id", "unk_id", "max_length",
                     "padding_side", "truncation_side", "split_special_tokens"});
  if (c.string_at(j, p, "type") != "clip_bpe") c.fail_code(ErrorCode::Unsupported, json_path(p, "type"), "expected \"clip_bpe\"");
  ClipTokenizerSpec s;
  const std::string vp = json_path(p, "vocab");
  const json& vocab = c.array(c.member(j, p, "vocab"), vp);
  if (vocab.empty() || vocab.size() > kClipMaxVocab) c.fail(vp, std::to_string(vocab.size()) + " tokens, out of range");
  s.vocab.reserve(vocab.size());
  for (size_t i = 0; i < vocab.size(); ++i) s.vocab.push_back(c.string(vocab[i], json_index(vp, i)));
  const std::string mp = json_path(p, "merges");
  const json& merges = c.array(c.member(j, p, "merges"), mp);
  if (merges.size() > kClipMaxMerges) c.fail(mp, "more than " + std::to_string(kClipMaxMerges) + " merges");
  s.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string m = c.string(merges[i], json_index(mp, i));
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      c.fail(json_index(mp, i), "expected two symbols separated by one space, got " + quote_for_error(m));
    s.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  const std::string ap = json_path(p, "added_tokens");
  const json& added = c.array(c.member(j, p, "added_tokens"), ap);
  if (added.size() > kClipMaxAddedTokens) c.fail(ap, "too many added tokens");
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string ep = json_index(ap, i);
    c.object(added[i], ep);
    c.only_keys(added[i], ep, {"content", "id", "special"});
    ClipAddedToken t;
    t.content = c.string_at(added[i], ep, "content");
    t.id = int32_t(c.int_at(added[i], ep, "id", 0, int64_t(kClipMaxVocab)));
    t.special = c.bool_at(added[i], ep, "special");
    s.added.push_back(std::move(t));
  }
  const int64_t top = int64_t(kClipMaxVocab);
  s.bos_id = int32_t(c.int_at(j, p, "bos_id", 0, top));
  s.eos_id = int32_t(c.int_at(j, p, "eos_id", 0, top));
  s.pad_id = int32_t(c.int_at(j, p, "pad_id", 0, top));
  s.unk_id = int32_t(c.int_at(j, p, "unk_id", 0, top));
  s.max_length = int(c.int_at(j, p, "max_length", 2, kClipMaxLength));
  auto side = [&](const char* key) {
    const std::string v = c.string_at(j, p, key);
    if (v != "left" && v != "right") c.fail(json_path(p, key), "expected \"left\" or \"right\"");
    return v == "left";
  };
  s.pad_left = side("padding_side");
  s.truncate_left = side("truncation_side");
  s.split_special_tokens = c.bool_at(j, p, "split_special_tokens");
  validate_clip_tokenizer_spec(s, c.origin() + ": " + p);  // ids, duplicates, byte symbols, added tokens
  return s;
}

}  // namespace diffrt
