// CPU reference multi-head scaled-dot-product attention (self and cross):
//   o[b, i, h*D + d] = sum_j P[i, j] v[b, j, h*D + d],
//   P[i, :] = softmax_j(scale * q[b, i, h*D:(h+1)*D] . k[b, j, h*D:(h+1)*D])   (max subtracted)
// Layout: q [B, Lq, ldq], k/v [B, Lkv, ldk/ldv], o [B, Lq, ldo], row-strided so the columns of a
// fused QKV projection are read in place; head h owns columns [h*D, (h+1)*D).
// Method: one OpenMP region over (b, h, query block of 64) tasks. Per thread, the K and V columns
// of the current (b, h) are copied once into contiguous buffers (K as [Lkv, D], V transposed to
// Vt [D, Lkv]) and reused while the thread stays on that head; each task then computes
// S = Q_blk K^T (gemm_nt_f32, fp32 accumulation), a vectorised fp32 softmax with the row sums in
// double, and O_blk = P V = gemm_nt_f32(P, Vt). Copying K contiguous cut the GEMM packing cost
// (strided L3 reads) by 1/3 at Lkv=4096; one parallel region keeps the fork/join count at one.
// Speed (one core, thread CPU time): L=256 D=256 1.5 ms (44 GFLOP/s); L=4096 D=40 H=8 0.61 s.
// Causal (key j > query i masked): a query block only needs keys [0, i0 + rows), so both GEMMs run over
// that prefix; inside it the masked scores are set to -inf before the softmax and their probabilities to
// exactly 0 after it (exp_nonpos clamps at exp(-87), which would otherwise leave 1.6e-38).
// o may be q itself (same columns): each task reads its query rows before writing them. o must not
// overlap k or v.
// Tested by tests/ops_ref_test.cpp against torch softmax(q k^T * scale) v fixtures (1 head D=64 and
// 256, multi-head, cross-attention with Lkv=77) and a naive double loop over awkward shapes; the causal
// mask by tests/attention_causal_test.cpp (naive double loop; CLIP text-encoder shapes).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "base/error.h"
#include "kernels/gemm/gemm.h"

namespace diffrt {
namespace {

// exp(x) for x <= 0 (scores after max subtraction), <= 1.03e-7 relative error (checked over every
// float in [-87, 0]). Written so compilers vectorise it: libm expf is a scalar call and cost more
// than both GEMMs at Lkv=4096. There are no float compares or float->int conversions, which GCC
// will not if-convert under -ftrapping-math; selects are done on the bit patterns instead.
// x = n*ln2 + r, |r| <= ln2/2 (n rounded with the 1.5*2^23 trick, ln2 split Cody-Waite style);
// exp(r) by its degree-7 Taylor polynomial (truncation < 6e-9 relative); 2^n built in the exponent
// field. x < -87 is clamped (exp(-87) = 1.6e-38 is nothing next to the row maximum's 1); NaN stays NaN.
__attribute__((always_inline)) inline float exp_nonpos(float x) {
  uint32_t ux;
  std::memcpy(&ux, &x, 4);
  const uint32_t nan_mask = 0u - static_cast<uint32_t>((ux & 0x7fffffffu) > 0x7f800000u);
  const uint32_t uc = ux > 0xC2AE0000u ? 0xC2AE0000u : ux;  // below -87 (and -NaN) -> -87
  float xc;
  std::memcpy(&xc, &uc, 4);
  const float t = xc * 1.44269504f + 12582912.0f;  // low mantissa bits of t hold n = round(x/ln2)
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  const uint32_t n_plus_127 = tb - 0x4B400000u + 127u;  // unsigned: NaN lanes wrap harmlessly
  const float fn = t - 12582912.0f;
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12e-4
  float poly = 1.0f / 5040.0f;
  poly = poly * r + 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const uint32_t bits = n_plus_127 << 23;  // n in [-126, 0]: 2^n is a normal float
  float scale;
  std::memcpy(&scale, &bits, 4);
  const float y = poly * scale;
  uint32_t uy;
  std::memcpy(&uy, &y, 4);
  const uint32_t ur = (ux & nan_mask) | (uy & ~nan_mask);
  float res;
  std::memcpy(&res, &ur, 4);
  return res;
}

// Rows of s [rows, L]: s = softmax(scale * s), fp32 values, row sums in double.
__attribute__((always_inline)) inline void softmax_rows(float* s, int rows, int L, float scale) {
  for (int i = 0; i < rows; ++i) {
    float* si = s + static_cast<size_t>(i) * L;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < L; ++j) {
      si[j] *= scale;
      mx = std::max(mx, si[j]);
    }
    for (int j = 0; j < L; ++j) si[j] = exp_nonpos(si[j] - mx);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < L; ++j) sum += si[j];
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = 0; j < L; ++j) si[j] *= inv;
  }
}
// Compiled for the baseline ISA and for AVX2+FMA, picked at run time (as gemm_ref.cpp does).
__attribute__((target("avx2,fma"))) void softmax_rows_avx2(float* s, int rows, int L, float scale) {
  softmax_rows(s, rows, L, scale);
}
void softmax_rows_base(float* s, int rows, int L, float scale) { softmax_rows(s, rows, L, scale); }
using SoftmaxFn = void (*)(float*, int, int, float);
SoftmaxFn pick_softmax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return softmax_rows_avx2;
#endif
  return softmax_rows_base;
}

}  // namespace

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
  static const SoftmaxFn softmax_fn = pick_softmax();  // CPU feature probe, immutable after init

#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(static_cast<size_t>(qb) * Lkv);  // s: [qb, Lkv] scores, then probabilities
    std::vector<float> vt(static_cast<size_t>(D) * Lkv);  // vt: [D, Lkv], V of (kv_b, kv_h) transposed
    std::vector<float> kc(static_cast<size_t>(Lkv) * D);  // kc: [Lkv, D], K of (kv_b, kv_h), packed rows
    int kv_b = -1, kv_h = -1;
#pragma omp for schedule(dynamic, 1)
    for (long long t = 0; t < tasks; ++t) {
      const int blk = static_cast<int>(t % qblocks);
      const int h = static_cast<int>((t / qblocks) % H);
      const int b = static_cast<int>(t / (static_cast<long long>(qblocks) * H));
      const int i0 = blk * qb, rows = std::min(qb, Lq - i0);
      const size_t col = static_cast<size_t>(h) * D;
      const float* qblk = q + (static_cast<size_t>(b) * Lq + i0) * p.ldq + col;  // [rows, D]
      if (b != kv_b || h != kv_h) {  // consecutive tasks of a thread usually share (b, h)
        for (int j = 0; j < Lkv; ++j) {
          const float* ksrc = k + (static_cast<size_t>(b) * Lkv + j) * p.ldk + col;
          const float* vsrc = v + (static_cast<size_t>(b) * Lkv + j) * p.ldv + col;
          std::memcpy(kc.data() + static_cast<size_t>(j) * D, ksrc, static_cast<size_t>(D) * sizeof(float));
          for (int d = 0; d < D; ++d) vt[static_cast<size_t>(d) * Lkv + j] = vsrc[d];
        }
        kv_b = b;
        kv_h = h;
      }
      // Causal: only keys [0, i0 + rows) are visible to this block; s is packed as [rows, lk].
      const int lk = p.causal ? std::min(Lkv, i0 + rows) : Lkv;
      gemm_nt_f32(rows, lk, D, qblk, p.ldq, kc.data(), D, s.data(), lk, false);
      if (p.causal)
        for (int i = 0; i < rows; ++i)
          for (int j = i0 + i + 1; j < lk; ++j) s[static_cast<size_t>(i) * lk + j] = -INFINITY;
      softmax_fn(s.data(), rows, lk, scale);
      if (p.causal)
        for (int i = 0; i < rows; ++i)
          for (int j = i0 + i + 1; j < lk; ++j) s[static_cast<size_t>(i) * lk + j] = 0.0f;
      float* oblk = o + (static_cast<size_t>(b) * Lq + i0) * p.ldo + col;         // [rows, D]
      gemm_nt_f32(rows, D, lk, s.data(), lk, vt.data(), Lkv, oblk, p.ldo, false);
    }
  }
}

}  // namespace diffrt
