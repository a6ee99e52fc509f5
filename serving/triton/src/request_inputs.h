// Reading one Triton request's input tensors into typed values, checked against the request
// contract (serving/triton/README.md): each known input's datatype, element count and byte size,
// its buffers in host memory; unknown inputs are refused. Nothing here knows diffrt: turning the
// values into diffrt_sample_params is sample_request.cpp's job.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "triton_util.h"

namespace diffrt_triton {

// A [batch, len, dim] FP32 tensor (prompt embeddings).
struct Embeds {
  std::vector<float> data;
  int batch = 0, len = 0, dim = 0;
};

// An FP32 image batch [n, h, w, c] (INIT_IMAGE) or mask [n, h, w] (MASK, c = 1).
struct ImageTensor {
  std::vector<float> data;
  int n = 0, h = 0, w = 0, c = 0;
};

struct RequestInputs {
  std::optional<std::string> prompt, negative_prompt;  // PROMPT, NEGATIVE_PROMPT (BYTES, one element)
  // The C strings diffrt_sample_params points at for them (set by make_sample_params; live as long as this).
  mutable const char* prompt_cstr = nullptr;
  mutable const char* negative_prompt_cstr = nullptr;
  std::optional<Embeds> prompt_embeds, negative_prompt_embeds;  // PROMPT_EMBEDS, NEGATIVE_PROMPT_EMBEDS
  std::optional<std::vector<int32_t>> class_labels;  // CLASS_LABELS (INT32, 1 or NUM_IMAGES values)
  std::optional<uint64_t> seed;                      // SEED (UINT64)
  std::optional<int32_t> steps, num_images, height, width;  // STEPS, NUM_IMAGES, HEIGHT, WIDTH (INT32)
  std::optional<float> guidance_scale;               // GUIDANCE_SCALE (FP32)
  std::optional<std::string> sampler;                // SAMPLER (BYTES, one element)
  std::optional<bool> karras;                        // KARRAS (BOOL): Karras sigmas
  std::optional<ImageTensor> init_image;             // INIT_IMAGE (FP32 [N, H, W, C] in [0, 1])
  std::optional<ImageTensor> mask;                   // MASK (FP32 [N, H, W] in [0, 1], white = repaint)
  std::optional<float> strength;                     // STRENGTH (FP32, in (0, 1])
};

// Which outputs the client asked for (all of them when it named none).
struct RequestedOutputs {
  bool images = false, step = false, total = false;
};

Error read_inputs(TRITONBACKEND_Request* request, RequestInputs* out);
Error read_requested_outputs(TRITONBACKEND_Request* request, RequestedOutputs* out);

}  // namespace diffrt_triton
