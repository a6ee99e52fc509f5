// CLIP's byte-level BPE tokenizer, as transformers' slow CLIPTokenizer (4.39) runs it when ftfy is not
// installed, which is how StableDiffusionPipeline tokenizes a prompt:
//   tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
//
// Steps (each mirrors one step of transformers; see clip_tokenizer.cpp for the details):
//  1. Split the text on the added tokens (the special tokens; SD 2.x's pad token "!" is one too),
//     leftmost-longest. Added tokens map straight to their ids.
//  2. Each other piece goes through transformers' BasicTokenizer(strip_accents=False,
//     do_split_on_punc=False): drop NUL, U+FFFD and control/format/unassigned/private-use characters
//     (general category C*, but tab, LF and CR become spaces, as does every Zs space), put spaces around
//     CJK ideographs, NFC-normalise, split on whitespace, lowercase each word (Python str.lower: full
//     case mapping, final sigma) and join the words with single spaces.
//  3. Pre-tokenize with CLIP's pattern  <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
//     [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+  (case-insensitive).
//  4. Map each piece's UTF-8 bytes to GPT-2's printable byte symbols and apply the BPE merges in rank
//     order, the last symbol carrying the end-of-word suffix "</w>". Unknown symbols map to unk.
//  5. Truncate to max_length - 2 tokens, add <|startoftext|> and <|endoftext|>, pad to max_length.
// Unicode data: PCRE2 (Unicode 14, as Python 3.11's unicodedata) for general categories and the pattern;
// ICU for NFC and lowercasing. Tested against ids produced by transformers for ~200 strings
// (tests/clip_tokenizer_test.cpp; fixtures by tests/fixtures/make_clip_fixtures.py).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer_spec.h"

namespace diffrt {

class ClipTokenizer {
 public:
  explicit ClipTokenizer(ClipTokenizerSpec spec);  // validates; throws Error(InvalidModel)
  ~ClipTokenizer();
  ClipTokenizer(const ClipTokenizer&) = delete;
  ClipTokenizer& operator=(const ClipTokenizer&) = delete;

  // The ids of `text` without bos/eos, truncation or padding (transformers' tokenize + convert).
  // Throws Error(InvalidArgument) for invalid UTF-8 or text above kClipMaxPromptBytes.
  std::vector<int32_t> tokenize(std::string_view text) const;
  // input_ids of StableDiffusionPipeline: [max_length] with bos/eos, truncated and padded.
  std::vector<int32_t> encode(std::string_view text) const;
  // Step 2 alone (BasicTokenizer's output joined with spaces), for tests and debugging.
  std::string basic_clean(std::string_view text) const;

  const ClipTokenizerSpec& spec() const { return spec_; }
  int max_length() const { return spec_.max_length; }

 private:
  struct Impl;
  ClipTokenizerSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace diffrt
