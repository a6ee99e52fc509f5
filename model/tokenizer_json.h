// The model file's "tokenizer" section (a CLIP BPE tokenizer, resolved by the converter from a Hugging Face
// tokenizer folder) <-> ClipTokenizerSpec:
//   {"type": "clip_bpe", "vocab": [token by id...], "merges": ["a b", ...] (rank order),
//    "added_tokens": [{"content": s, "id": i, "special": b}...], "bos_id", "eos_id", "pad_id", "unk_id",
//    "max_length", "padding_side": "right"|"left", "truncation_side": "right"|"left", "split_special_tokens"}
// The reader treats it as hostile: exact key sets, typed fields, then validate_clip_tokenizer_spec.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "base/strict_json.h"
#include "model/tokenizer_spec.h"

namespace diffrt {

nlohmann::json tokenizer_to_json(const ClipTokenizerSpec& s);
// `path` is the section's path in errors ("tokenizer").
ClipTokenizerSpec tokenizer_from_json(const nlohmann::json& j, const JsonCheck& c, const std::string& path);

}  // namespace diffrt
