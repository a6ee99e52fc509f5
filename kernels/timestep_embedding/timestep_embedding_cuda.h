// CUDA-only additions to the timestep embedding op (the params struct is in timestep_embedding.h).
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/timestep_embedding/timestep_embedding.h"

namespace diffrt {

// Precomputes the embeddings of a whole sampling run in one launch: p.timesteps holds [steps, p.n]
// values (step-major), p.class_labels [p.n] (the same labels at every step) and p.out receives
// [steps, p.n, out_dim]. Row (s, i) equals timestep_embedding_cuda on timesteps[s*n + i], label[i].
// steps = 1 is exactly timestep_embedding_cuda.
void timestep_embedding_steps_cuda(const TimestepEmbeddingParams& p, int steps, cudaStream_t stream);

}  // namespace diffrt
