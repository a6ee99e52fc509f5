// GroupNorm over NHWC activations, with the fusions the UNet graph uses:
//   emb_mode AddBeforeNorm: y = GN(x + emb[n, c]) (ResnetBlock2D "default" time conditioning)
//   emb_mode ScaleShift:    y = GN(x) * (1 + emb[n, c]) + emb[n, C + c]   ("scale_shift")
//   silu:                   y = silu(y) afterwards.
// Statistics are fp32 (double in the CPU reference), biased variance, per (sample, group).
#pragma once
#include <cuda_runtime_api.h>

#include "base/dtype.h"

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
  // CUDA only: fp32 scratch for the split statistics, at least group_norm_workspace_bytes(p) bytes,
  // 16-byte aligned. Its size depends on the shape only (never on the device), so a planner can size
  // it once. The CPU reference ignores it.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// How the CUDA kernel splits the HW rows of one sample for the statistics pass: about 1024 blocks in
// all (enough to fill an H100 several times), at least 16 rows each. A function of the shape only.
inline int group_norm_row_splits(int n, int hw) {
  if (n <= 0 || hw <= 0) return 1;
  int want = (1024 + n - 1) / n;
  int most = (hw + 15) / 16;
  int splits = want < most ? want : most;
  if (splits < 1) splits = 1;
  int rows = (hw + splits - 1) / splits;
  return (hw + rows - 1) / rows;  // no empty split
}
// Bytes of fp32 scratch the CUDA kernel needs: one (mean, M2) pair per (sample, group, row split).
inline size_t group_norm_workspace_bytes(const GroupNormParams& p) {
  if (p.n <= 0 || p.groups <= 0) return 0;
  return size_t(p.n) * size_t(p.groups) * size_t(group_norm_row_splits(p.n, p.hw)) * 2 * sizeof(float);
}

void group_norm_ref(const GroupNormParams& p);  // CPU reference; dtype must be F32
void group_norm_cuda(const GroupNormParams& p, cudaStream_t stream);

}  // namespace diffrt
