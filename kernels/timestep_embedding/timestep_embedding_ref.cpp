// CPU reference timestep embedding (diffusers Timesteps + TimestepEmbedding + class Embedding):
//   half = dim / 2
//   freq[i] = exp(float(-ln(max_period)) * float(i) / float(half - freq_shift))   all fp32, as torch
//   arg[n, i] = float(t[n]) * freq[i]
//   emb = [sin(arg), cos(arg)] ([cos, sin] when flip), one zero column appended when dim is odd
//   out = linear_2(SiLU(linear_1(emb))) + class_table[label[n]]
// Every step is a separate fp32 rounding in the same order as diffusers' get_timestep_embedding,
// and sin/cos/exp are the accurate libm float functions (arguments reach ~1000 rad at t=999).
// Bit-exactness: the exponent and t*freq steps equal torch's bit for bit; libm expf is correctly
// rounded while torch's CPU exp (Sleef, <= 1 ulp) is not, so ~10% of frequencies differ by 1 ulp and
// ~90% of embedding values are bit-identical; the rest differ by at most |t| * 1.2e-7 (<= 1.2e-4 at
// t=999), an error torch itself has versus a correctly rounded exp.
// Layout: weights as nn.Linear stores them ([out, in]); out [N, out_dim].
// Tested by tests/ops_ref_test.cpp against diffusers.models.embeddings.get_timestep_embedding
// (dim 128 flip=False shift=1; dim 320 flip=True shift=0; t = 0, 1, 999, 500.5) and a
// TimestepEmbedding + class-table fixture.
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/gemm/gemm.h"
#include "kernels/timestep_embedding/timestep_embedding.h"

namespace diffrt {

void sinusoidal_embedding_ref(const float* t, int n, int dim, bool flip, float freq_shift,
                              float max_period, float* emb) {
  DIFFRT_REQUIRE(n >= 0 && dim > 0 && t && emb, ErrorCode::Internal, "sinusoidal_embedding_ref: bad args");
  const int half = dim / 2;
  DIFFRT_REQUIRE(half == 0 || static_cast<float>(half) - freq_shift != 0.0f, ErrorCode::Internal,
                 "sinusoidal_embedding_ref: half_dim - freq_shift is zero");
  // torch: exponent = -math.log(max_period) * arange(half, float32); exponent / (half - shift).
  // The Python double -log(max_period) enters a float32 op as a float32 scalar.
  const float neg_log = static_cast<float>(-std::log(static_cast<double>(max_period)));
  const float denom = static_cast<float>(half) - freq_shift;
  std::vector<float> freq(half);  // freq: [half]
  for (int i = 0; i < half; ++i) {
    volatile float e = neg_log * static_cast<float>(i);  // volatile: keep the two fp32 roundings
    freq[i] = std::exp(static_cast<float>(e / denom));
  }
  for (int b = 0; b < n; ++b) {
    float* row = emb + static_cast<size_t>(b) * dim;  // row: [dim]
    float* sin_part = row + (flip ? half : 0);
    float* cos_part = row + (flip ? 0 : half);
    for (int i = 0; i < half; ++i) {
      const float arg = t[b] * freq[i];
      sin_part[i] = std::sin(arg);
      cos_part[i] = std::cos(arg);
    }
    if (dim % 2 == 1) row[dim - 1] = 0.0f;
  }
}

void timestep_embedding_ref(const TimestepEmbeddingParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("timestep_embedding_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.n >= 0 && p.dim > 0 && p.out_dim > 0, ErrorCode::Internal,
                 "timestep_embedding_ref: invalid shape");
  if (p.n == 0) return;
  DIFFRT_REQUIRE(p.timesteps && p.w1 && p.w2 && p.out, ErrorCode::Internal,
                 "timestep_embedding_ref: null pointer");
  DIFFRT_REQUIRE(!p.class_table || (p.class_labels && p.num_classes > 0), ErrorCode::Internal,
                 "timestep_embedding_ref: class table needs labels and num_classes");
  // Labels are checked before anything is written, so a bad label leaves `out` untouched.
  for (int b = 0; p.class_table && b < p.n; ++b) {
    const int32_t label = p.class_labels[b];
    DIFFRT_REQUIRE(label >= 0 && label < p.num_classes, ErrorCode::InvalidArgument,
                   "timestep_embedding_ref: class label " + std::to_string(label) + " out of range [0, " +
                       std::to_string(p.num_classes) + ")");
  }
  const int n = p.n, dim = p.dim, T = p.out_dim;
  std::vector<float> emb(static_cast<size_t>(n) * dim);  // emb: [N, dim]
  sinusoidal_embedding_ref(p.timesteps, n, dim, p.flip, p.freq_shift, p.max_period, emb.data());

  std::vector<float> hidden(static_cast<size_t>(n) * T);  // hidden: [N, T] = linear_1(emb)
  LinearParams l1;
  l1.x = emb.data();
  l1.w = p.w1;
  l1.bias = p.b1;
  l1.y = hidden.data();
  l1.m = n;
  l1.n = T;
  l1.k = dim;
  linear_ref(l1);

  LinearParams l2;  // out = linear_2(SiLU(hidden))
  l2.x = hidden.data();
  l2.w = p.w2;
  l2.bias = p.b2;
  l2.y = p.out;
  l2.m = n;
  l2.n = T;
  l2.k = T;
  l2.silu_input = true;
  linear_ref(l2);

  if (p.class_table) {
    const float* table = static_cast<const float*>(p.class_table);  // [num_classes, T]
    float* out = static_cast<float*>(p.out);                        // [N, T]
    for (int b = 0; b < n; ++b) {
      const float* row = table + static_cast<size_t>(p.class_labels[b]) * T;
      for (int j = 0; j < T; ++j) out[static_cast<size_t>(b) * T + j] += row[j];
    }
  }
}

}  // namespace diffrt
