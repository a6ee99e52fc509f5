// A request's inputs -> diffrt_sample_params, with the model's defaults for what the request leaves
// out (the same defaults as `diffrt sample`, so the same settings give the same bytes).
//
// Prompt text (PROMPT / NEGATIVE_PROMPT) goes to diffrt's tokenizer and text encoder (models converted with
// them); SAMPLER is passed to diffrt by name, which refuses unknown names listing the supported ones.
#pragma once
#include "diffrt.h"
#include "model_config.h"
#include "request_inputs.h"

namespace diffrt_triton {

struct ImageShape {
  int n = 0, h = 0, w = 0, c = 0;
};

// Fills *params (pointing into `in`, which must outlive it) and the shape of the IMAGES output.
// Values diffrt itself validates (guidance range, sizes vs the model, labels vs classes, embeddings vs
// context_dim, ...) are passed through so its messages reach the client unchanged.
Error make_sample_params(const diffrt_model_info& info, const ModelConfig& cfg, const RequestInputs& in,
                         diffrt_sample_params* params, ImageShape* shape);

}  // namespace diffrt_triton
