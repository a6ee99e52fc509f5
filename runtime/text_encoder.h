// Prompt -> text embeddings, as StableDiffusionPipeline.encode_prompt does it with the model file's CLIP
// tokenizer and text encoder (diffusers 0.27.2, clip_skip unset, no LoRA):
//   ids    = tokenizer(prompts, padding="max_length", max_length=model_max_length, truncation=True)
//   embeds = text_encoder(ids)[0]                              (last_hidden_state, [P, L, hidden])
//   with guidance: the negative prompts ("" for each prompt when none is given) the same way
//   both repeated num_images_per_prompt times, each prompt's copies adjacent: [p1, p1, p2, p2, ...]
// The text encoder runs on a backend given as a function (CPU here; runtime/cuda/cuda_text.h for the GPU).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/cpu_executor.h"
#include "model/model_file.h"
#include "runtime/latent_pipeline.h"

namespace diffrt {

// Token ids of `prompts` with the model file's tokenizer: [P, max_length] int32, row-major.
// Throws Error(InvalidArgument) when the file has no tokenizer or a prompt is not valid UTF-8.
std::vector<int32_t> tokenize_prompts(const ModelFile& mf, const std::vector<std::string>& prompts);

// Runs the text encoder graph on token ids [batch, len] -> last_hidden_state [batch, len, hidden].
using TextEncodeFn = std::function<TextEmbeds(const std::vector<int32_t>& ids, int batch, int len)>;

// The CPU backend's TextEncodeFn (weights shared with the caller's other CPU executors).
TextEmbeds encode_ids_cpu(const ModelFile& mf, const CpuWeights& weights, const std::vector<int32_t>& ids, int batch,
                          int len);

struct PromptEmbeds {
  TextEmbeds positive;  // [P * per_prompt, L, hidden]
  TextEmbeds negative;  // same shape; empty (batch 0) unless requested
};

// encode_prompt: `negatives` is empty (use "" for every prompt), one string (used for every prompt, as
// diffusers takes a single negative prompt) or one per prompt. `per_prompt` >= 1 copies of each.
PromptEmbeds encode_prompts(const ModelFile& mf, const std::vector<std::string>& prompts,
                            const std::vector<std::string>& negatives, bool with_negative, int per_prompt,
                            const TextEncodeFn& encode);

}  // namespace diffrt
