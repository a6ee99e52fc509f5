// The text encoder on the CUDA backend: token ids [batch, len] -> last_hidden_state [batch, len, hidden] fp32
// (computed in the model dtype). Same contract as encode_ids_cpu (runtime/text_encoder.h); ids are checked
// against the vocabulary on the host before upload.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/cuda/cuda_executor.h"
#include "runtime/latent_pipeline.h"

namespace diffrt {

TextEmbeds encode_ids_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                           const std::vector<int32_t>& ids, int batch, int len);

}  // namespace diffrt
