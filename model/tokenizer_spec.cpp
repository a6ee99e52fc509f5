// Validation of a CLIP tokenizer spec (untrusted: it comes from a model file or a tokenizer folder).
#include "model/tokenizer_spec.h"

#include <string_view>
#include <unordered_set>

#include "base/error.h"
#include "base/strict_json.h"
#include "base/utf8.h"

namespace diffrt {

namespace {

// True when s is one or more byte-level BPE characters (GPT-2's printable byte symbols).
bool is_byte_symbols(std::string_view s) {
  static const std::unordered_set<uint32_t> symbols = [] {
    std::unordered_set<uint32_t> out;
    for (int b = 0; b < 256; ++b) out.insert(clip_byte_to_unicode(uint8_t(b)));
    return out;
  }();
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_char_len(static_cast<unsigned char>(s[i]));
    if (i + n > s.size() || !symbols.count(utf8_decode(s.data() + i, n))) return false;
    i += n;
  }
  return true;
}

}  // namespace

bool is_clip_byte_symbols(std::string_view s) { return is_byte_symbols(s); }

void validate_clip_tokenizer_spec(const ClipTokenizerSpec& s, const std::string& origin) {
  auto bad = [&](const std::string& what) { fail(ErrorCode::InvalidModel, origin + ": " + what); };
  if (s.vocab.empty() || s.vocab.size() > kClipMaxVocab) bad("vocabulary size " + std::to_string(s.vocab.size()) + " out of range");
  if (s.merges.size() > kClipMaxMerges) bad("more than " + std::to_string(kClipMaxMerges) + " merges");
  std::unordered_set<std::string_view> seen;
  seen.reserve(s.vocab.size());
  for (size_t i = 0; i < s.vocab.size(); ++i) {
    const std::string& t = s.vocab[i];
    if (t.empty() || t.size() > kClipMaxTokenBytes) bad("vocab[" + std::to_string(i) + "]: empty or longer than " + std::to_string(kClipMaxTokenBytes) + " bytes");
    if (utf8_invalid_at(t) != std::string::npos) bad("vocab[" + std::to_string(i) + "]: not valid UTF-8");
    if (!seen.insert(t).second) bad("vocab[" + std::to_string(i) + "]: duplicate token " + quote_for_error(t));
  }
  for (size_t i = 0; i < s.merges.size(); ++i)
    if (!is_byte_symbols(s.merges[i].first) || !is_byte_symbols(s.merges[i].second) ||
        s.merges[i].first.size() + s.merges[i].second.size() > kClipMaxTokenBytes)
      bad("merges[" + std::to_string(i) + "]: not two byte-level BPE symbols");
  const int64_t n = int64_t(s.vocab.size());
  auto check_id = [&](int32_t id, const char* what) {
    if (id < 0 || id >= n) bad(std::string(what) + " id " + std::to_string(id) + " is not in the vocabulary [0, " + std::to_string(n) + ")");
  };
  check_id(s.bos_id, "bos");
  check_id(s.eos_id, "eos");
  check_id(s.pad_id, "pad");
  check_id(s.unk_id, "unk");
  if (s.max_length < 2 || s.max_length > kClipMaxLength)
    bad("max_length " + std::to_string(s.max_length) + " out of range [2, " + std::to_string(kClipMaxLength) + "]");
  if (s.added.size() > kClipMaxAddedTokens) bad("more than " + std::to_string(kClipMaxAddedTokens) + " added tokens");
  for (size_t i = 0; i < s.added.size(); ++i) {
    const ClipAddedToken& a = s.added[i];
    check_id(a.id, "added token");
    if (s.vocab[size_t(a.id)] != a.content)
      bad("added token " + quote_for_error(a.content) + " has id " + std::to_string(a.id) + ", which is " +
          quote_for_error(s.vocab[size_t(a.id)]) + " in the vocabulary");
    for (size_t k = 0; k < s.added.size(); ++k)
      if (k != i && s.added[k].content.find(a.content) != std::string::npos)
        fail(ErrorCode::Unsupported, origin + ": added token " + quote_for_error(a.content) + " occurs inside added token " +
                                         quote_for_error(s.added[k].content) + " (overlapping added tokens are not supported)");
  }
}

}  // namespace diffrt
