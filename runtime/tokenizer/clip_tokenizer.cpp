// CLIP tokenizer: text processing and BPE (the steps are listed in clip_tokenizer.h).
//
// Exactness notes (all checked against transformers 4.39.3 on Python 3.11, see
// tests/clip_tokenizer_test.cpp):
//  * Python's unicodedata in 3.11 is Unicode 14.0, and so are PCRE2 10.42's property tables: the
//    category-based cleanup (C*, Zs) and \p{L}/\p{N}/\s agree character for character. ICU (Unicode 15)
//    does NFC and lowercasing; every character that reaches it is assigned in Unicode 14 (the cleanup
//    removed the rest), and those did not change their case mappings or decompositions in 15.
//  * Python's str.lower is full lowercasing with the Final_Sigma rule (U+03A3 -> U+03C2 at the end of a
//    word) and U+0130 -> "i" U+0307; ICU's u_strToLower with the root locale does the same.
//  * CLIP's pattern is compiled with regex.IGNORECASE. The regex module then lets 's match 'ſ (U+017F),
//    which PCRE2_CASELESS reproduces; and it matches U+0345 COMBINING GREEK YPOGEGRAMMENI (whose case
//    variants are letters) with none of the three classes, so the character is dropped. PCRE2 keeps
//    \p{...} case-sensitive, so U+0345 is excluded from the last class by hand. A sweep over every code
//    point found no other difference.
//  * Added tokens are split out leftmost-longest. transformers' Trie gives the same split whenever no
//    added token is a substring of another, which validate_clip_tokenizer_spec requires.
#include "runtime/tokenizer/clip_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "base/error.h"
#include "base/utf8.h"

namespace diffrt {

namespace {

// CLIP's pre-tokenization pattern (see the notes above for \x{345}).
constexpr const char* kClipPattern =
    R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+)";
// BasicTokenizer._clean_text: group 1 (tab, LF, CR and Zs spaces) becomes a space; the rest (NUL,
// U+FFFD, general category C: Cc, Cf, Cn, Co, Cs) is removed. Tab/LF/CR are Cc, so group 1 comes first.
constexpr const char* kCleanPattern = R"(([\t\n\r\p{Zs}])|[\p{C}\x{FFFD}])";
constexpr const char* kSpacePattern = R"(\s+)";

// transformers' BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks it lists.
bool is_cjk_ideograph(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

class Regex {
 public:
  explicit Regex(const char* pattern, uint32_t extra_flags = 0) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | extra_flags, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail(ErrorCode::Internal, std::string("clip tokenizer: cannot compile a pattern: ") +
                                    reinterpret_cast<const char*>(msg));
    }
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls f(start, end, group1_matched) for every match in s (valid UTF-8), left to right.
  template <class F>
  void for_each(std::string_view s, F&& f) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (!md) fail(ErrorCode::OutOfMemory, "clip tokenizer: out of memory");
    struct Free { pcre2_match_data* m; ~Free() { pcre2_match_data_free(m); } } free_md{md};
    PCRE2_SIZE pos = 0;
    while (pos < s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, PCRE2_NO_UTF_CHECK, md,
                           nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail(ErrorCode::Internal, "clip tokenizer: pattern match failed (" + std::to_string(rc) + ")");
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const bool g1 = rc >= 2 && ov[2] != PCRE2_UNSET;
      f(size_t(ov[0]), size_t(ov[1]), g1);
      // No pattern here matches the empty string; advance by one character if one ever did.
      pos = ov[1] > ov[0] ? ov[1] : ov[1] + utf8_char_len(static_cast<unsigned char>(s[ov[1]]));
    }
  }

 private:
  pcre2_code* code_ = nullptr;
};

std::u16string to_utf16(std::string_view s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  u_strFromUTF8(nullptr, 0, &n, s.data(), int32_t(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: UTF-8 to UTF-16 failed");
  std::u16string out(size_t(n), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), n, nullptr, s.data(), int32_t(s.size()), &err);
  if (U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: UTF-8 to UTF-16 failed");
  return out;
}
std::string to_utf8(const std::u16string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  u_strToUTF8(nullptr, 0, &n, reinterpret_cast<const UChar*>(s.data()), int32_t(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: UTF-16 to UTF-8 failed");
  std::string out(size_t(n), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), n, nullptr, reinterpret_cast<const UChar*>(s.data()), int32_t(s.size()), &err);
  if (U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: UTF-16 to UTF-8 failed");
  return out;
}

std::string nfc(std::string_view s) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n2 = unorm2_getNFCInstance(&err);
  if (U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: ICU NFC data unavailable");
  const std::u16string in = to_utf16(s);
  if (unorm2_isNormalized(n2, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()), &err) && U_SUCCESS(err))
    return std::string(s);
  err = U_ZERO_ERROR;
  int32_t n = unorm2_normalize(n2, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()), nullptr, 0, &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: NFC failed");
  std::u16string out(size_t(n), u'\0');
  err = U_ZERO_ERROR;
  unorm2_normalize(n2, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()),
                   reinterpret_cast<UChar*>(out.data()), n, &err);
  if (U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: NFC failed");
  return to_utf8(out);
}

// Python's str.lower() of one word: full lowercase mapping with Final_Sigma (ICU, root locale).
std::string lower(std::string_view s) {
  bool ascii = true;
  for (unsigned char c : s) ascii = ascii && c < 0x80;
  if (ascii) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
  }
  const std::u16string in = to_utf16(s);
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = u_strToLower(nullptr, 0, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()), "", &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: lowercasing failed");
  std::u16string out(size_t(n), u'\0');
  err = U_ZERO_ERROR;
  u_strToLower(reinterpret_cast<UChar*>(out.data()), n, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()),
               "", &err);
  if (U_FAILURE(err)) fail(ErrorCode::Internal, "clip tokenizer: lowercasing failed");
  return to_utf8(out);
}

struct PairHash {
  size_t operator()(const std::pair<std::string, std::string>& p) const {
    return std::hash<std::string>()(p.first) * 1000003u ^ std::hash<std::string>()(p.second);
  }
};

}  // namespace

struct ClipTokenizer::Impl {
  Regex pattern{kClipPattern, PCRE2_CASELESS};
  Regex clean{kCleanPattern};
  Regex space{kSpacePattern};
  std::unordered_map<std::string, int32_t> encoder;  // token -> id
  std::unordered_map<std::pair<std::string, std::string>, int, PairHash> ranks;
  std::string byte_symbol[256];  // GPT-2 bytes_to_unicode, UTF-8 encoded
  std::vector<const ClipAddedToken*> added_by_len;  // longest first
  // Pre-token -> ids (transformers caches bpe() per pre-token too). Bounded; guarded for concurrent use.
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;
  static constexpr size_t kMaxCache = 1 << 16;
};

ClipTokenizer::ClipTokenizer(ClipTokenizerSpec spec) : spec_(std::move(spec)), impl_(std::make_unique<Impl>()) {
  validate_clip_tokenizer_spec(spec_, "tokenizer");
  Impl& m = *impl_;
  m.encoder.reserve(spec_.vocab.size());
  for (size_t i = 0; i < spec_.vocab.size(); ++i) m.encoder.emplace(spec_.vocab[i], int32_t(i));
  m.ranks.reserve(spec_.merges.size());
  // transformers builds dict(zip(merges, range(n))): a repeated merge keeps its last rank.
  for (size_t i = 0; i < spec_.merges.size(); ++i) m.ranks[spec_.merges[i]] = int(i);
  for (int b = 0; b < 256; ++b) m.byte_symbol[b] = utf8_encode(clip_byte_to_unicode(uint8_t(b)));
  for (const ClipAddedToken& t : spec_.added) m.added_by_len.push_back(&t);
  std::stable_sort(m.added_by_len.begin(), m.added_by_len.end(),
                   [](const ClipAddedToken* a, const ClipAddedToken* b) { return a->content.size() > b->content.size(); });
}

ClipTokenizer::~ClipTokenizer() = default;

std::string ClipTokenizer::basic_clean(std::string_view text) const {
  const Impl& m = *impl_;
  // _clean_text
  std::string cleaned;
  cleaned.reserve(text.size());
  size_t last = 0;
  m.clean.for_each(text, [&](size_t b, size_t e, bool space) {
    cleaned.append(text.substr(last, b - last));
    if (space) cleaned.push_back(' ');
    last = e;
  });
  cleaned.append(text.substr(last));
  // _tokenize_chinese_chars
  std::string spaced;
  spaced.reserve(cleaned.size());
  for (size_t i = 0; i < cleaned.size();) {
    const size_t n = utf8_char_len(static_cast<unsigned char>(cleaned[i]));
    const uint32_t cp = utf8_decode(cleaned.data() + i, n);
    if (is_cjk_ideograph(cp)) spaced.push_back(' ');
    spaced.append(cleaned, i, n);
    if (is_cjk_ideograph(cp)) spaced.push_back(' ');
    i += n;
  }
  const std::string normalized = nfc(spaced);
  // whitespace_tokenize, lower() per word, " ".join
  std::string out;
  size_t start = 0;
  auto word = [&](size_t b, size_t e) {
    if (e <= b) return;
    if (!out.empty()) out.push_back(' ');
    out += lower(std::string_view(normalized).substr(b, e - b));
  };
  m.space.for_each(normalized, [&](size_t b, size_t e, bool) {
    word(start, b);
    start = e;
  });
  word(start, normalized.size());
  return out;
}

std::vector<int32_t> ClipTokenizer::tokenize(std::string_view text) const {
  if (text.size() > kClipMaxPromptBytes)
    fail(ErrorCode::InvalidArgument, "prompt is " + std::to_string(text.size()) + " bytes, above the limit of " +
                                         std::to_string(kClipMaxPromptBytes));
  const size_t bad = utf8_invalid_at(text);
  if (bad != std::string_view::npos)
    fail(ErrorCode::InvalidArgument, "prompt is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  const Impl& m = *impl_;
  std::vector<int32_t> ids;

  auto bpe_piece = [&](std::string_view piece) {
    std::vector<int32_t> out;
    if (piece == "<|startoftext|>" || piece == "<|endoftext|>") {  // transformers' bpe() cache entries
      auto it = m.encoder.find(std::string(piece));
      out.push_back(it != m.encoder.end() ? it->second : spec_.unk_id);
      return out;
    }
    std::vector<std::string> word;
    for (unsigned char c : piece) word.push_back(m.byte_symbol[c]);
    word.back() += "</w>";
    while (word.size() > 1) {
      int best = -1;
      size_t at = 0;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = m.ranks.find({word[i], word[i + 1]});
        if (it != m.ranks.end() && (best < 0 || it->second < best)) {
          best = it->second;
          at = i;
        }
      }
      if (best < 0) break;
      const std::string first = word[at], second = word[at + 1];
      std::vector<std::string> merged;
      merged.reserve(word.size());
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(std::move(word[i]));
          i += 1;
        }
      }
      word = std::move(merged);
    }
    for (const std::string& sym : word) {
      auto it = m.encoder.find(sym);
      out.push_back(it != m.encoder.end() ? it->second : spec_.unk_id);
    }
    return out;
  };

  auto text_piece = [&](std::string_view piece) {  // transformers' CLIPTokenizer._tokenize
    const std::string cleaned = basic_clean(piece);
    m.pattern.for_each(cleaned, [&](size_t b, size_t e, bool) {
      const std::string key = cleaned.substr(b, e - b);
      {
        std::lock_guard<std::mutex> lock(m.cache_mu);
        auto it = m.cache.find(key);
        if (it != m.cache.end()) {
          ids.insert(ids.end(), it->second.begin(), it->second.end());
          return;
        }
      }
      std::vector<int32_t> got = bpe_piece(key);
      ids.insert(ids.end(), got.begin(), got.end());
      std::lock_guard<std::mutex> lock(m.cache_mu);
      if (m.cache.size() >= Impl::kMaxCache) m.cache.clear();
      m.cache.emplace(key, std::move(got));
    });
  };

  // Split on added tokens, leftmost-longest.
  size_t seg = 0;
  if (!spec_.split_special_tokens && !m.added_by_len.empty()) {
    for (size_t i = 0; i < text.size();) {
      const ClipAddedToken* hit = nullptr;
      for (const ClipAddedToken* t : m.added_by_len)
        if (text.compare(i, t->content.size(), t->content) == 0) {
          hit = t;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      if (i > seg) text_piece(text.substr(seg, i - seg));
      ids.push_back(hit->id);
      i += hit->content.size();
      seg = i;
    }
  }
  if (seg < text.size()) text_piece(text.substr(seg));
  return ids;
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids = tokenize(text);
  const size_t keep = size_t(spec_.max_length) - 2;
  if (ids.size() > keep) {
    if (spec_.truncate_left) ids.erase(ids.begin(), ids.end() - std::ptrdiff_t(keep));
    else ids.resize(keep);
  }
  std::vector<int32_t> out;
  out.reserve(size_t(spec_.max_length));
  const size_t pad = keep - ids.size();
  if (spec_.pad_left) out.assign(pad, spec_.pad_id);
  out.push_back(spec_.bos_id);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(spec_.eos_id);
  if (!spec_.pad_left) out.insert(out.end(), pad, spec_.pad_id);
  return out;
}

}  // namespace diffrt
