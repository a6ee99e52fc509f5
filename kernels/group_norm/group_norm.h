// GroupNorm over NHWC activations, with the fusions the UNet graph uses:
//   emb_mode AddBeforeNorm: y = GN(x + emb[n, c]) (ResnetBlock2D "default" time conditioning)
//   emb_mode ScaleShift:    y = GN(x) * (1 + emb[n, c]) + emb[n, C + c]   ("scale_shift")
//   silu:                   y = silu(y) afterwards.
// Statistics are fp32 (double in the CPU reference), biased variance, per (sample, group).
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/common/dtype.h"

namespace diffrt {

enum class EmbMode : uint8_t { None, AddBeforeNorm, ScaleShift };

struct GroupNormParams {
  const void* x = nullptr;      // x: [N, HW, C]  (dtype)
  void* y = nullptr;            // y: [N, HW, C]  (dtype); may alias x
  const void* gamma = nullptr;  // [C] (dtype)
  const void* beta = nullptr;   // [C] (dtype)
  const void* emb = nullptr;    // [N, C] (AddBeforeNorm) or [N, 2C] (ScaleShift), dtype; null for None
  EmbMode emb_mode = EmbMode::None;
  int n = 0, hw = 0, c = 0, groups = 0;
  float eps = 1e-5f;
  bool silu = false;
  DType dtype = DType::F32;
};

void group_norm_ref(const GroupNormParams& p);  // CPU reference; dtype must be F32
void group_norm_cuda(const GroupNormParams& p, cudaStream_t stream);

}  // namespace diffrt
