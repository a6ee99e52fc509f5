// Timestep embedding: sinusoid (diffusers get_timestep_embedding) -> Linear -> SiLU -> Linear,
// plus an optional class-embedding row: out = MLP(sin(t)) + class_table[label].
//   freq[i] = exp(-ln(max_period) * i / (half - freq_shift)), arg = t * freq,
//   emb = [sin(arg), cos(arg)] ([cos, sin] when flip), zero column appended when dim is odd.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "base/dtype.h"

namespace diffrt {

struct TimestepEmbeddingParams {
  const float* timesteps = nullptr;      // [N] (fp32 always)
  const int32_t* class_labels = nullptr; // [N] or null (validated in range by the caller)
  const void* w1 = nullptr;              // linear_1.weight [T, dim]
  const void* b1 = nullptr;              // [T]
  const void* w2 = nullptr;              // linear_2.weight [T, T]
  const void* b2 = nullptr;              // [T]
  const void* class_table = nullptr;     // [num_classes, T] or null
  void* out = nullptr;                   // [N, T]
  int n = 0, dim = 0, out_dim = 0, num_classes = 0;
  bool flip = false;
  float freq_shift = 0.0f;
  float max_period = 10000.0f;
  DType dtype = DType::F32;              // dtype of weights and out
};

// Just the sinusoid: emb [N, dim] fp32. Shared by the reference MLP and tests.
void sinusoidal_embedding_ref(const float* t, int n, int dim, bool flip, float freq_shift,
                              float max_period, float* emb);
void timestep_embedding_ref(const TimestepEmbeddingParams& p);  // dtype must be F32
void timestep_embedding_cuda(const TimestepEmbeddingParams& p, cudaStream_t stream);

}  // namespace diffrt
