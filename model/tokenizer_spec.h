// The data of a CLIP byte-level BPE tokenizer as the model file stores it: pure data plus its validation.
// The algorithm that runs it is runtime/tokenizer/clip_tokenizer.h; the reader of Hugging Face tokenizer
// folders is weights_converter/tokenizer_import.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffrt {

// A token split out of the text before BPE (transformers' "added tokens"; lstrip/rstrip/single_word
// are not supported and refused at load).
struct ClipAddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
};

// Everything the tokenizer needs, resolved from a Hugging Face tokenizer folder (weights_converter/tokenizer_import.h)
// or from a model file's "tokenizer" section.
struct ClipTokenizerSpec {
  std::vector<std::string> vocab;                           // id -> token, ids dense in [0, vocab.size())
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<ClipAddedToken> added;                        // split out of the text, matched leftmost-longest
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  int max_length = 77;             // tokenizer.model_max_length
  bool pad_left = false;           // padding_side == "left"
  bool truncate_left = false;      // truncation_side == "left"
  bool split_special_tokens = false;  // true: added tokens are not split out (transformers' option)
};

// Limits applied to untrusted tokenizer data and prompts.
constexpr size_t kClipMaxVocab = 1 << 20;
constexpr size_t kClipMaxMerges = 49152 - 256 - 2;  // transformers reads merges.txt lines [1, 48895)
constexpr size_t kClipMaxTokenBytes = 1024;
constexpr size_t kClipMaxAddedTokens = 1024;
constexpr int kClipMaxLength = 4096;
constexpr size_t kClipMaxPromptBytes = 64 << 10;

// Throws Error(InvalidModel) naming `origin` and the field when the spec is inconsistent (ids out of
// range, duplicate tokens, sizes above the limits, invalid UTF-8).
void validate_clip_tokenizer_spec(const ClipTokenizerSpec& s, const std::string& origin);

// True when s is one or more byte-level BPE characters (GPT-2's printable byte symbols).
bool is_clip_byte_symbols(std::string_view s);

}  // namespace diffrt
