// Token + position embedding gather (CLIP's CLIPTextEmbeddings with default position ids):
//   y[b, t, :] = token_table[ids[b, t], :] + pos_table[t, :]
// One sum in fp32, one rounding to the storage type (as torch adds two tables of the model dtype).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "base/dtype.h"

namespace diffrt {

struct EmbeddingParams {
  const int32_t* ids = nullptr;       // ids: [n, l] (host memory for the reference, device memory for CUDA)
  const void* token_table = nullptr;  // [vocab, C] (dtype)
  const void* pos_table = nullptr;    // [max_positions, C] (dtype); null: no position term
  void* y = nullptr;                  // y: [n, l, C] (dtype); must not overlap the tables or ids
  int n = 0, l = 0, c = 0;            // n or l = 0 is a no-op
  int vocab = 0, max_positions = 0;   // table rows; l <= max_positions when pos_table is set
  DType dtype = DType::F32;
};

// CPU reference (dtype F32). An id outside [0, vocab) throws Error(InvalidArgument) naming it.
void embedding_ref(const EmbeddingParams& p);
// CUDA. Ids live on the device and are not checked on the host: a row whose id is outside [0, vocab) is
// written as NaN (never read out of bounds). Callers validate ids before upload (the executor does).
void embedding_cuda(const EmbeddingParams& p, cudaStream_t stream);

}  // namespace diffrt
