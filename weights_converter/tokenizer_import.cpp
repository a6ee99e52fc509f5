// Reading a Hugging Face CLIP tokenizer folder (untrusted input) into a ClipTokenizerSpec (converter side).
//
// What transformers 4.39's CLIPTokenizer.from_pretrained(folder) does, and what is kept here:
//  * vocab.json: {token: id}. Here ids must be exactly 0..n-1 (the text encoder's embedding rows).
//  * merges.txt: the whole file is stripped, split on "\n", line 0 (the "#version" header) dropped and
//    lines [1, 48895) kept; each line is two symbols. Here a line must be exactly two symbols made of
//    byte-level BPE characters (what every real file holds), else the file is refused.
//  * Special tokens: CLIPTokenizer's defaults (bos <|startoftext|>, eos/unk/pad <|endoftext|>), replaced by
//    tokenizer_config.json's entries, replaced in turn by special_tokens_map.json's. A value is a string or
//    an AddedToken object {"content", "lstrip", "rstrip", "single_word", "normalized", "special"}.
//  * Added tokens (split out of the text before BPE): tokenizer_config.json's "added_tokens_decoder"
//    {id: AddedToken} plus every special token (SD 2.x's pad token "!" is one). Here each must be a token of
//    vocab.json with that id; lstrip/rstrip/single_word and added_tokens.json are refused as unsupported.
//  * model_max_length (required here: without it diffusers would pad to 1e30), padding_side,
//    truncation_side, split_special_tokens. Other keys (do_lower_case, errors, name_or_path, ...) have no
//    effect on CLIPTokenizer and are ignored.
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/error.h"
#include "base/atomic_file.h"
#include "base/strict_json.h"
#include "model/tokenizer_spec.h"
#include "weights_converter/tokenizer_import.h"
#include "base/utf8.h"

namespace diffrt {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxVocabFileBytes = 64ull << 20;
constexpr uint64_t kMaxMergesFileBytes = 64ull << 20;
constexpr uint64_t kMaxConfigBytes = 1ull << 20;

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

struct TokenValue {  // one special-token setting: absent (keep), null (none) or a token
  bool present = false, null = false;
  std::string content;
};

// A string or an AddedToken object at `path`. Refuses the stripping options we do not implement.
std::string parse_added_token(const JsonCheck& c, const json& v, const std::string& path, bool* special = nullptr) {
  if (v.is_string()) return c.string(v, path);
  c.object(v, path);
  c.only_keys(v, path, {"__type", "content", "lstrip", "rstrip", "single_word", "normalized", "special"});
  if (v.contains("__type") && c.string_at(v, path, "__type") != "AddedToken")
    c.fail(json_path(path, "__type"), "expected \"AddedToken\"");
  std::string content = c.string_at(v, path, "content");
  for (const char* k : {"lstrip", "rstrip", "single_word"})
    if (v.contains(k) && c.bool_at(v, path, k))
      c.fail_code(ErrorCode::Unsupported, json_path(path, k), "added tokens that strip whitespace or match single words are not supported");
  if (v.contains("normalized")) c.bool_at(v, path, "normalized");
  if (v.contains("special")) {
    bool s = c.bool_at(v, path, "special");
    if (special) *special = s;
  }
  return content;
}

const char* const kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                    "sep_token", "cls_token", "mask_token"};

// Reads the special-token entries of a tokenizer_config.json / special_tokens_map.json object into `vals`.
void read_special_tokens(const JsonCheck& c, const json& o, std::unordered_map<std::string, TokenValue>& vals,
                         std::vector<std::string>& additional) {
  for (const char* k : kSpecialKeys) {
    if (!o.contains(k)) continue;
    TokenValue tv;
    tv.present = true;
    if (o[k].is_null()) tv.null = true;
    else tv.content = parse_added_token(c, o[k], k);
    vals[k] = tv;
  }
  if (o.contains("additional_special_tokens") && !o["additional_special_tokens"].is_null()) {
    const json& a = c.array(o["additional_special_tokens"], "additional_special_tokens");
    if (a.size() > kClipMaxAddedTokens) c.fail("additional_special_tokens", "too many entries");
    additional.clear();
    for (size_t i = 0; i < a.size(); ++i)
      additional.push_back(parse_added_token(c, a[i], json_index("additional_special_tokens", i)));
  }
}

std::vector<std::string> read_vocab(const std::string& path) {
  const JsonCheck c(path);
  const json j = c.parse_strict(read_file_bytes(path, kMaxVocabFileBytes), "vocab");
  c.object(j, "");
  if (j.size() > kClipMaxVocab) c.fail("", std::to_string(j.size()) + " tokens, above the limit of " + std::to_string(kClipMaxVocab));
  if (j.empty()) c.fail("", "empty vocabulary");
  std::vector<std::string> vocab(j.size());
  std::vector<char> seen(j.size(), 0);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string p = quote_for_error(it.key());
    const int64_t id = c.int_in(it.value(), p, 0, int64_t(j.size()) - 1);
    if (seen[size_t(id)]) c.fail(p, "id " + std::to_string(id) + " is used twice (ids must be 0.." + std::to_string(j.size() - 1) + ", once each)");
    seen[size_t(id)] = 1;
    vocab[size_t(id)] = it.key();
  }
  return vocab;
}

std::vector<std::pair<std::string, std::string>> read_merges(const std::string& path) {
  std::string text = read_file_bytes(path, kMaxMergesFileBytes);
  const size_t bad = utf8_invalid_at(text);
  if (bad != std::string::npos) fail(ErrorCode::InvalidModel, path + ": not valid UTF-8 (byte " + std::to_string(bad) + ")");
  auto ws = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; };
  size_t b = 0, e = text.size();
  while (b < e && ws(text[b])) ++b;
  while (e > b && ws(text[e - 1])) --e;
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0;
  for (size_t pos = b; pos < e && merges.size() < kClipMaxMerges; ++line_no) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos || nl > e) nl = e;
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (line_no == 0) continue;  // "#version: 0.2"
    std::vector<std::string_view> parts;
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && ws(line[i])) ++i;
      size_t k = i;
      while (k < line.size() && !ws(line[k])) ++k;
      if (k > i) parts.push_back(line.substr(i, k - i));
      i = k;
    }
    if (parts.size() != 2 || !is_clip_byte_symbols(parts[0]) || !is_clip_byte_symbols(parts[1]))
      fail(ErrorCode::InvalidModel, path + ": line " + std::to_string(line_no + 1) + ": expected two byte-level BPE symbols, got " +
                                        quote_for_error(line));
    if (parts[0].size() + parts[1].size() > kClipMaxTokenBytes)
      fail(ErrorCode::InvalidModel, path + ": line " + std::to_string(line_no + 1) + ": symbols too long");
    merges.emplace_back(std::string(parts[0]), std::string(parts[1]));
  }
  return merges;
}

}  // namespace

ClipTokenizerSpec load_clip_tokenizer_dir(const std::string& dir) {
  ClipTokenizerSpec s;
  const std::string vocab_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
  const std::string config_path = dir + "/tokenizer_config.json", map_path = dir + "/special_tokens_map.json";
  if (file_exists(dir + "/added_tokens.json"))
    fail(ErrorCode::Unsupported, dir + "/added_tokens.json: extra added tokens are not supported");
  s.vocab = read_vocab(vocab_path);
  s.merges = read_merges(merges_path);

  std::unordered_map<std::string, TokenValue> special = {
      {"bos_token", {true, false, "<|startoftext|>"}}, {"eos_token", {true, false, "<|endoftext|>"}},
      {"unk_token", {true, false, "<|endoftext|>"}},   {"pad_token", {true, false, "<|endoftext|>"}}};
  std::vector<std::string> additional;
  std::vector<ClipAddedToken> added;

  const JsonCheck cc(config_path);
  const json config = cc.parse_strict(read_file_bytes(config_path, kMaxConfigBytes), "config");
  cc.object(config, "");
  read_special_tokens(cc, config, special, additional);
  if (!config.contains("model_max_length"))
    cc.fail("model_max_length", "missing (StableDiffusionPipeline pads prompts to it)");
  s.max_length = int(cc.int_at(config, "", "model_max_length", 2, kClipMaxLength));
  auto side = [&](const char* key, bool* left) {
    if (!config.contains(key) || config[key].is_null()) return;
    const std::string v = cc.string_at(config, "", key);
    if (v != "left" && v != "right") cc.fail(key, "expected \"left\" or \"right\", got " + quote_for_error(v));
    *left = v == "left";
  };
  side("padding_side", &s.pad_left);
  side("truncation_side", &s.truncate_left);
  if (config.contains("split_special_tokens")) s.split_special_tokens = cc.bool_at(config, "", "split_special_tokens");
  if (config.contains("added_tokens_decoder") && !config["added_tokens_decoder"].is_null()) {
    const json& d = cc.object(config["added_tokens_decoder"], "added_tokens_decoder");
    if (d.size() > kClipMaxAddedTokens) cc.fail("added_tokens_decoder", "too many entries");
    for (auto it = d.begin(); it != d.end(); ++it) {
      const std::string p = json_path("added_tokens_decoder", it.key());
      const std::string& k = it.key();
      if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos)
        cc.fail(p, "expected a token id as the key");
      ClipAddedToken t;
      t.id = int32_t(std::stol(k));
      t.content = parse_added_token(cc, it.value(), p, &t.special);
      added.push_back(t);
    }
  }
  if (file_exists(map_path)) {
    const JsonCheck cm(map_path);
    const json map = cm.parse_strict(read_file_bytes(map_path, kMaxConfigBytes), "special_tokens_map");
    cm.object(map, "");
    read_special_tokens(cm, map, special, additional);
  }

  std::unordered_map<std::string, int32_t> vocab_id;
  for (size_t i = 0; i < s.vocab.size(); ++i) vocab_id.emplace(s.vocab[i], int32_t(i));
  for (const ClipAddedToken& t : added) {
    if (t.id < 0 || size_t(t.id) >= s.vocab.size() || s.vocab[size_t(t.id)] != t.content)
      fail(ErrorCode::Unsupported, config_path + ": added_tokens_decoder: token " + quote_for_error(t.content) + " with id " +
                                       std::to_string(t.id) + " is not that entry of vocab.json (tokens beyond the vocabulary are not supported)");
  }
  auto add_special = [&](const std::string& content, const std::string& what) -> int32_t {
    auto it = vocab_id.find(content);
    if (it == vocab_id.end())
      fail(ErrorCode::Unsupported, dir + ": " + what + " " + quote_for_error(content) + " is not in vocab.json");
    bool known = false;
    for (const ClipAddedToken& t : added) known = known || t.content == content;
    if (!known && !content.empty()) added.push_back({content, it->second, true});
    return it->second;
  };
  auto id_of = [&](const char* key, const char* what) -> int32_t {
    const TokenValue& v = special[key];
    if (v.null || v.content.empty()) fail(ErrorCode::Unsupported, dir + ": the tokenizer has no " + what + " token");
    return add_special(v.content, key);
  };
  // transformers adds the special tokens in SPECIAL_TOKENS_ATTRIBUTES order.
  s.bos_id = id_of("bos_token", "bos");
  s.eos_id = id_of("eos_token", "eos");
  s.unk_id = id_of("unk_token", "unk");
  for (const char* k : {"sep_token", "pad_token", "cls_token", "mask_token"}) {
    const TokenValue& v = special[k];
    if (v.present && !v.null) add_special(v.content, k);
  }
  s.pad_id = id_of("pad_token", "pad");
  for (const std::string& a : additional) add_special(a, "additional special token");
  s.added = std::move(added);
  validate_clip_tokenizer_spec(s, dir);
  return s;
}

}  // namespace diffrt
