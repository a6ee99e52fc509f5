// CPU reference multi-head scaled-dot-product attention (self and cross):
//   o[b, i, h*D + d] = sum_j P[i, j] v[b, j, h*D + d],
//   P[i, :] = softmax_j(scale * q[b, i, h*D:(h+1)*D] . k[b, j, h*D:(h+1)*D])   (max subtracted)
// Layout: q [B, Lq, ldq], k/v [B, Lkv, ldk/ldv], o [B, Lq, ldo], row-strided so the columns of a
// fused QKV projection are read in place; head h owns columns [h*D, (h+1)*D).
// Method: one OpenMP region over (b, h, query block) tasks. Each computes S = Q_blk K^T with
// gemm_nt_f32 (fp32 accumulation), an fp32 softmax with the row sum in double, and O_blk = P V as
// gemm_nt_f32(P, Vt) with V of its (b, h) transposed to Vt [D, Lkv] in a per-thread buffer (reused
// while the thread stays on the same head; the copy is 1/(2*64) of the task's FLOPs). A single
// parallel region keeps the fork/join count at one: under CPU oversubscription each extra OpenMP
// barrier cost milliseconds.
// o may be q itself (same columns): each task reads its query rows before writing them. o must not
// overlap k or v.
// Tested by tests/ops_ref_test.cpp against torch softmax(q k^T * scale) v fixtures (1 head D=64 and
// 256, multi-head, cross-attention with Lkv=77) and a naive double loop over awkward shapes.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/error.h"
#include "kernels/gemm/gemm.h"

namespace diffrt {

void attention_ref(const AttentionParams& p) {
  DIFFRT_REQUIRE(p.dtype == DType::F32, ErrorCode::Internal,
                 std::string("attention_ref: dtype must be fp32, got ") + dtype_name(p.dtype));
  DIFFRT_REQUIRE(p.batch >= 0 && p.heads > 0 && p.lq >= 0 && p.lkv > 0 && p.head_dim > 0,
                 ErrorCode::Internal, "attention_ref: invalid shape");
  const int B = p.batch, H = p.heads, Lq = p.lq, Lkv = p.lkv, D = p.head_dim;
  const int width = H * D;
  DIFFRT_REQUIRE(p.ldq >= width && p.ldk >= width && p.ldv >= width && p.ldo >= width,
                 ErrorCode::Internal, "attention_ref: row stride smaller than heads*head_dim");
  if (B == 0 || Lq == 0) return;
  DIFFRT_REQUIRE(p.q && p.k && p.v && p.o, ErrorCode::Internal, "attention_ref: null pointer");
  const float* q = static_cast<const float*>(p.q);  // q: [B, Lq, ldq]
  const float* k = static_cast<const float*>(p.k);  // k: [B, Lkv, ldk]
  const float* v = static_cast<const float*>(p.v);  // v: [B, Lkv, ldv]
  float* o = static_cast<float*>(p.o);              // o: [B, Lq, ldo]
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();

  // Query block: 64 rows, halved while there are too few tasks for the threads.
  int qb = std::min(64, Lq);
  while (qb > 8 && static_cast<long long>(B) * H * ((Lq + qb - 1) / qb) < 2LL * threads) qb /= 2;
  const int qblocks = (Lq + qb - 1) / qb;
  const long long tasks = static_cast<long long>(B) * H * qblocks;
  const float scale = p.scale;

#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(static_cast<size_t>(qb) * Lkv);  // s: [qb, Lkv] scores, then probabilities
    std::vector<float> vt(static_cast<size_t>(D) * Lkv);  // vt: [D, Lkv], V of (vt_b, vt_h) transposed
    int vt_b = -1, vt_h = -1;
#pragma omp for schedule(dynamic, 1)
    for (long long t = 0; t < tasks; ++t) {
      const int blk = static_cast<int>(t % qblocks);
      const int h = static_cast<int>((t / qblocks) % H);
      const int b = static_cast<int>(t / (static_cast<long long>(qblocks) * H));
      const int i0 = blk * qb, rows = std::min(qb, Lq - i0);
      const size_t col = static_cast<size_t>(h) * D;
      const float* qblk = q + (static_cast<size_t>(b) * Lq + i0) * p.ldq + col;  // [rows, D]
      const float* kbh = k + static_cast<size_t>(b) * Lkv * p.ldk + col;        // [Lkv, D]
      gemm_nt_f32(rows, Lkv, D, qblk, p.ldq, kbh, p.ldk, s.data(), Lkv, false);
      for (int i = 0; i < rows; ++i) {
        float* si = s.data() + static_cast<size_t>(i) * Lkv;
        float mx = -INFINITY;
        for (int j = 0; j < Lkv; ++j) {
          si[j] *= scale;
          mx = std::max(mx, si[j]);
        }
        double sum = 0.0;
        for (int j = 0; j < Lkv; ++j) {
          si[j] = std::exp(si[j] - mx);
          sum += si[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int j = 0; j < Lkv; ++j) si[j] *= inv;
      }
      if (b != vt_b || h != vt_h) {  // consecutive tasks of a thread usually share (b, h)
        for (int j = 0; j < Lkv; ++j) {
          const float* src = v + (static_cast<size_t>(b) * Lkv + j) * p.ldv + col;
          for (int d = 0; d < D; ++d) vt[static_cast<size_t>(d) * Lkv + j] = src[d];
        }
        vt_b = b;
        vt_h = h;
      }
      float* oblk = o + (static_cast<size_t>(b) * Lq + i0) * p.ldo + col;         // [rows, D]
      gemm_nt_f32(rows, D, Lkv, s.data(), Lkv, vt.data(), Lkv, oblk, p.ldo, false);
    }
  }
}

}  // namespace diffrt
