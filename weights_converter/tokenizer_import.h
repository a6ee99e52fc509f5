// Reads a Hugging Face CLIP tokenizer folder into the model file's tokenizer data (the converter's side).
#pragma once
#include <string>

#include "model/tokenizer_spec.h"

namespace diffrt {

// Reads a tokenizer folder as transformers' CLIPTokenizer.from_pretrained does: vocab.json,
// merges.txt, tokenizer_config.json (required: model_max_length) and special_tokens_map.json (optional;
// its entries override tokenizer_config.json's). Files are untrusted: sizes are bounded, JSON is
// strict (no duplicate keys), every field is type-checked; errors name the file and the field.
ClipTokenizerSpec load_clip_tokenizer_dir(const std::string& dir);

}  // namespace diffrt
