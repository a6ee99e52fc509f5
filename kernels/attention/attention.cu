// Flash-style multi-head attention (forward; optional causal mask), self and cross:
//   o[b, i, h*d + e] = sum_j softmax_j(scale * q_i . k_j) v[b, j, h*d + e]
// causal (CLIP's text encoder): keys j > i get -inf scores, and key tiles that lie wholly after a block's
// last query row are never fetched (a block of query rows [q0, q0+64) stops at key min(Lkv, q0+64)).
// Key 0 is visible to every row, so the running max is finite from the first tile on.
// Layout: q [B, Lq, ldq], k/v [B, Lkv, ldk/ldv], o [B, Lq, ldo]; head h occupies columns [h*d, (h+1)*d)
// of each row, so a fused QKV projection output [B, L, 3C] is read in place (ld = 3C).
// The score matrix never reaches global memory: each block keeps a running row max m and row sum l
// (online softmax, base-2 exponentials with scale*log2(e) folded in) and rescales its output
// accumulator by exp2(m_old - m_new) whenever the max grows. All accumulation is fp32.
//
// Variants:
//  * fp16/bf16: tensor cores through mma.sync.m16n8k16 (fp32 accumulate), fragments loaded with
//    ldmatrix from padded shared memory (row pitch + 16 bytes: conflict-free), tiles fetched with
//    cp.async (16-byte, zero-fill for rows/columns out of range) so the V fetch overlaps QK^T and the next
//    K fetch overlaps PV. A block is 4 warps x 16 query rows = 64 rows of one (batch, head); K/V tiles of
//    64 keys (32 for d > 128; 16 for d = 512 on GPUs with 99 KB of shared memory per block, see below).
//    For d <= 64 (SD 1.x's 40, SD 2.x's and CLIP's 64) a warp's Q fragments stay in registers across key tiles
//    (attn_mma_small, capped at 128 registers, room for 4 blocks per SM, with no spills on sm_80/86/90 per
//    ptxas -v; the version that re-read them took 133 on sm_80, 3 blocks per SM, and spilled on sm_90; at d = 64
//    sm_86/89's 100 KB of shared memory per SM holds 3 blocks either way); larger d re-read them for every tile.
//    The head dim is bucketed (template D in {32, 48, 64, 80, 128, 160, 256, 512}); a head dim below its
//    bucket is zero-padded in shared memory (e.g. SD's 40 -> 48, 8 -> 32, DiT's 72 -> 80: 10% of the MMA work is padding, kept rather than an m16n8k8 tail step for the k dimension and a
//    9-tile output split that no GPU run has verified yet) and masked on store. The output accumulator (DO/2 fp32 registers per thread) is capped at DO = 128
//    columns: for d = 256 / 512 (DDPM's single 256/512-channel head) the grid gets one block per 128
//    output columns and each recomputes QK^T (2x / 4x the QK^T work; those attentions are small).
//  * fp32: SIMT. A block is 4 warps x 4 query rows; a lane owns one key of a 32-key tile for the scores
//    (4 query rows per K read) and D/32 output columns for P.V. Exact fp32 (no TF32), for fp32 models and
//    as a second reference. KV_SHARED (d = 512 on 99 KB GPUs): V is fetched into K's buffer after the scores.
// Tiles: attention_tile (attention_tiles.h, tested on the CPU) picks each bucket's tile from the device's opt-in
// shared memory per block (queried once per device); the preferred tiles fit every supported GPU except at
// d = 512 on sm_86/sm_89 (99 KB), which get the smaller ones above. The dynamic-smem attribute is raised once per
// kernel and device (kernels/common/kernel_attrs.h).
// Masking covers Lq/Lkv that are not tile multiples (query rows zero-filled and not stored; keys beyond
// Lkv get -inf scores and zero V rows) and any head dim 1..512. 16-byte fetches need d, ld* multiples of 8
// elements and 16-byte aligned bases; otherwise the same kernel fetches element by element.
// Next steps if profiles ask: double-buffered K/V, wgmma (sm_90a) with TMA, split-KV for Lq=1.
//
// Test: tests/gpu/attention_test.cpp (vs attention_ref over d = 8..512, Lq/Lkv = 1..4096, self and
// cross, strided views, all dtypes, the small tiles forced); causal: tests/gpu/attention_causal_test.cpp; tile
// choice per GPU class (CPU): tests/attention_tile_test.cpp. Benchmark: bench
// (TFLOP/s = 4*B*H*Lq*Lkv*d / time; causal rows count the visible half).
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/attention/attention.h"
#include "kernels/common/cuda_check.h"
#include "kernels/common/cuda_types.cuh"
#include "kernels/common/kernel_attrs.h"

namespace diffrt {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

struct AttnArgs {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  int batch, heads, lq, lkv, d;
  long long ldq, ldk, ldv, ldo;
  float scale_log2;  // scale * log2(e)
  int nchunks;       // output-column chunks of DO per head (tensor-core kernel)
  bool vec;          // 16-byte fetches allowed
  bool causal;       // mask keys j > query i
};

// ---- PTX wrappers (sm_80+) ---------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  // src-size 0 writes 16 zero bytes without reading src.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <class T>
struct Mma;
template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

// Copies rows [row0, row0+ROWS) x columns [col0, col0+COLS) of a row-major global matrix (row pitch
// ld elements) into shared memory with row pitch PITCH. Rows >= row_end and columns >= col_end are
// zero-filled. vec: 16-byte cp.async (col0, ld, col_end multiples of 8, base 16-byte aligned).
template <class T, int ROWS, int COLS, int PITCH, int NTHREADS>
__device__ __forceinline__ void load_tile(T* s, const T* g, long long ld, int row0, int row_end,
                                          int col0, int col_end, bool vec) {
  if (vec) {
    constexpr int kChunks = COLS / 8;
    for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += NTHREADS) {
      int r = idx / kChunks, cc = (idx % kChunks) * 8;
      bool valid = row0 + r < row_end && col0 + cc < col_end;
      const T* src = valid ? g + (long long)(row0 + r) * ld + col0 + cc : g;
      cp_async16(s + r * PITCH + cc, src, valid);
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * COLS; idx += NTHREADS) {
      int r = idx / COLS, c = idx % COLS;
      bool valid = row0 + r < row_end && col0 + c < col_end;
      s[r * PITCH + c] = valid ? g[(long long)(row0 + r) * ld + col0 + c] : from_f<T>(0.0f);
    }
  }
}

// ---- fp16/bf16 tensor-core kernel ----------------------------------------------------------------
// grid (ceil(Lq/64), heads * D/DO, batch), block 128, dynamic smem: Q [64][D+8], K [BK][D+8], V [BK][DO+8].
// The body of both entry points below. Q_REG (D <= 64): a warp's Q fragments (D/16 x 4 registers) are read
// from shared memory once and kept in registers across key tiles instead of being re-read for every tile.
template <class T, int D, int DO, int BK>
__device__ __forceinline__ void attn_mma_body(const AttnArgs& a) {
  constexpr bool Q_REG = D <= 64;
  constexpr int BQ = 64, NT = 128;
  constexpr int QP = D + 8, KP = D + 8, VP = DO + 8;  // pitches (elements): +16 bytes, no bank conflicts
  constexpr int NS = BK / 8, NO = DO / 8;             // score / output n-tiles of 8 columns per warp
  extern __shared__ __align__(16) unsigned char attn_smem[];
  T* sQ = reinterpret_cast<T*>(attn_smem);
  T* sK = sQ + BQ * QP;
  T* sV = sK + BK * KP;

  const int b = blockIdx.z, h = blockIdx.y / a.nchunks, chunk = blockIdx.y % a.nchunks;
  const int q0 = blockIdx.x * BQ;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const T* qg = static_cast<const T*>(a.q) + (long long)b * a.lq * a.ldq + (long long)h * a.d;
  const T* kg = static_cast<const T*>(a.k) + (long long)b * a.lkv * a.ldk + (long long)h * a.d;
  const T* vg = static_cast<const T*>(a.v) + (long long)b * a.lkv * a.ldv + (long long)h * a.d;
  const int vcol0 = chunk * DO;

  load_tile<T, BQ, D, QP, NT>(sQ, qg, a.ldq, q0, a.lq, 0, a.d, a.vec);
  load_tile<T, BK, D, KP, NT>(sK, kg, a.ldk, 0, a.lkv, 0, a.d, a.vec);
  cp_async_commit();

  float o[NO][4];
#pragma unroll
  for (int i = 0; i < NO; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const int kend = a.causal ? min(a.lkv, q0 + BQ) : a.lkv;  // keys this block can see
  const int ntiles = (kend + BK - 1) / BK;
  uint32_t qf[Q_REG ? D / 16 : 1][4];  // Q_REG: this warp's Q fragments
  for (int j = 0; j < ntiles; ++j) {
    const int k0 = j * BK;
    load_tile<T, BK, DO, VP, NT>(sV, vg, a.ldv, k0, a.lkv, vcol0, a.d, a.vec);
    cp_async_commit();
    cp_async_wait<1>();  // Q and K_j have landed
    __syncthreads();
    if constexpr (Q_REG) {
      if (j == 0) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
          ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * QP + kk * 16 + (lane >> 4) * 8);
      }
    }

    // S = Q K^T for this warp's 16 rows x BK keys.
    float s[NS][4];
#pragma unroll
    for (int i = 0; i < NS; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t af[4];
      if constexpr (Q_REG) {
#pragma unroll
        for (int i = 0; i < 4; ++i) af[i] = qf[kk][i];
      } else {
        ldmatrix_x4(af, sQ + (warp * 16 + (lane & 15)) * QP + kk * 16 + (lane >> 4) * 8);
      }
#pragma unroll
      for (int n2 = 0; n2 < NS / 2; ++n2) {
        uint32_t bf[4];
        ldmatrix_x4(bf, sK + (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * KP + kk * 16 + ((lane >> 3) & 1) * 8);
        Mma<T>::run(s[2 * n2], af, bf[0], bf[1]);
        Mma<T>::run(s[2 * n2 + 1], af, bf[2], bf[3]);
      }
    }

    // Online softmax. Thread holds rows lane/4 (c0,c1) and lane/4+8 (c2,c3) at key columns
    // nt*8 + 2*(lane%4) + {0,1}; a row is shared by the 4 threads of a quad.
    const bool partial = k0 + BK > a.lkv;
    const int row_lo = q0 + warp * 16 + (lane >> 2);  // this thread's rows: row_lo (c0, c1), row_lo + 8 (c2, c3)
    const bool diagonal = a.causal && k0 + BK - 1 > q0 + warp * 16;  // some key of the tile is after a row
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float t = s[nt][c] * a.scale_log2;
        const int key = k0 + nt * 8 + 2 * (lane & 3) + (c & 1);
        if (partial && key >= a.lkv) t = -INFINITY;
        if (diagonal && key > row_lo + 8 * (c >> 1)) t = -INFINITY;
        s[nt][c] = t;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < NS; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // Finite from the first tile on: it holds key 0, which no mask hides. The guard keeps a row that
      // has seen only masked keys at m = -inf without producing NaN (alpha = exp2(-inf - -inf)).
      const float m_new = fmaxf(m[r], mx);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[r] - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < NS; ++nt) {
        float p0 = exp2f(s[nt][2 * r] - m_use), p1 = exp2f(s[nt][2 * r + 1] - m_use);
        s[nt][2 * r] = p0;
        s[nt][2 * r + 1] = p1;
        sum += p0 + p1;
      }
      l[r] = l[r] * alpha + sum;  // per-thread partial; the quad is reduced at the end
      m[r] = m_new;
#pragma unroll
      for (int dt = 0; dt < NO; ++dt) {
        o[dt][2 * r] *= alpha;
        o[dt][2 * r + 1] *= alpha;
      }
    }

    __syncthreads();  // every warp is done with sK
    if (j + 1 < ntiles) {
      load_tile<T, BK, D, KP, NT>(sK, kg, a.ldk, k0 + BK, a.lkv, 0, a.d, a.vec);
      cp_async_commit();
      cp_async_wait<1>();  // V_j has landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // O += P V: P from the score registers (C layout == A layout of the next mma), V via ldmatrix.trans.
#pragma unroll
    for (int k2 = 0; k2 < BK / 16; ++k2) {
      uint32_t pf[4];
      pf[0] = Mma<T>::pack(s[2 * k2][0], s[2 * k2][1]);
      pf[1] = Mma<T>::pack(s[2 * k2][2], s[2 * k2][3]);
      pf[2] = Mma<T>::pack(s[2 * k2 + 1][0], s[2 * k2 + 1][1]);
      pf[3] = Mma<T>::pack(s[2 * k2 + 1][2], s[2 * k2 + 1][3]);
#pragma unroll
      for (int d2 = 0; d2 < NO / 2; ++d2) {
        uint32_t vf[4];
        ldmatrix_x4_trans(vf, sV + (k2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * VP + d2 * 16 + (lane >> 4) * 8);
        Mma<T>::run(o[2 * d2], pf, vf[0], vf[1]);
        Mma<T>::run(o[2 * d2 + 1], pf, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with sV before the next V fetch
  }

  // Normalise and store this thread's output elements.
  T* og = static_cast<T*>(a.o) + (long long)b * a.lq * a.ldo + (long long)h * a.d;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float lr = l[r];
    lr += __shfl_xor_sync(0xffffffffu, lr, 1);
    lr += __shfl_xor_sync(0xffffffffu, lr, 2);
    const float inv = 1.0f / lr;
    const int row = q0 + warp * 16 + (lane >> 2) + 8 * r;
    if (row >= a.lq) continue;
    T* orow = og + (long long)row * a.ldo;
#pragma unroll
    for (int dt = 0; dt < NO; ++dt) {
      const int col = vcol0 + dt * 8 + 2 * (lane & 3);
      const float v0 = o[dt][2 * r] * inv, v1 = o[dt][2 * r + 1] * inv;
      if (a.vec && col + 1 < a.d) {
        float pair[2] = {v0, v1};
        store_vec<T, 2>(orow + col, pair);
      } else {
        if (col < a.d) orow[col] = from_f<T>(v0);
        if (col + 1 < a.d) orow[col + 1] = from_f<T>(v1);
      }
    }
  }
}

// D <= 64 keeps Q in registers; the bound of 4 blocks per SM (128 registers a thread) keeps that from costing
// occupancy where shared memory allows 4 (ptxas: 128 registers, no spills on sm_80/86/90). Larger D keep ptxas' own choice: an explicit minimum
// of 1 block lets it take 255 registers and spill at D = 256/512.
template <class T, int D, int DO, int BK>
__global__ void __launch_bounds__(128, 4) attn_mma_small(AttnArgs a) {
  attn_mma_body<T, D, DO, BK>(a);
}
template <class T, int D, int DO, int BK>
__global__ void __launch_bounds__(128) attn_mma(AttnArgs a) {
  attn_mma_body<T, D, DO, BK>(a);
}

// ---- fp32 SIMT kernel --------------------------------------------------------------------------
// grid (ceil(Lq/16), heads, batch), block 128, dynamic smem: Q [16][D], K [32][D+1], V [32][D] floats;
// KV_SHARED: V [32][D] lives in K's buffer and is fetched once the scores of the tile are in registers.
template <int D, bool KV_SHARED>
__global__ void __launch_bounds__(128) attn_f32(AttnArgs a) {
  constexpr int RQ = 4, BQ = 16, BK = 32, E = D / 32;
  extern __shared__ __align__(16) unsigned char attn_smem[];
  float* sQ = reinterpret_cast<float*>(attn_smem);
  float* sK = sQ + BQ * D;
  float* sV = KV_SHARED ? sK : sK + BK * (D + 1);

  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* qg = static_cast<const float*>(a.q) + (long long)b * a.lq * a.ldq + (long long)h * a.d;
  const float* kg = static_cast<const float*>(a.k) + (long long)b * a.lkv * a.ldk + (long long)h * a.d;
  const float* vg = static_cast<const float*>(a.v) + (long long)b * a.lkv * a.ldv + (long long)h * a.d;

  for (int idx = threadIdx.x; idx < BQ * D; idx += 128) {
    int r = idx / D, c = idx % D;
    sQ[idx] = (q0 + r < a.lq && c < a.d) ? qg[(long long)(q0 + r) * a.ldq + c] : 0.0f;
  }
  float acc[RQ][E], m[RQ], l[RQ];
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[i][e] = 0.0f;
  }
  const float* myq = sQ + warp * RQ * D;

  const int kend = a.causal ? min(a.lkv, q0 + BQ) : a.lkv;  // keys this block can see
  for (int k0 = 0; k0 < kend; k0 += BK) {
    __syncthreads();  // previous tile fully consumed (and sQ written, first time)
    for (int idx = threadIdx.x; idx < BK * D; idx += 128) {
      int r = idx / D, c = idx % D;
      bool valid = k0 + r < a.lkv && c < a.d;
      sK[r * (D + 1) + c] = valid ? kg[(long long)(k0 + r) * a.ldk + c] : 0.0f;
      if (!KV_SHARED) sV[r * D + c] = valid ? vg[(long long)(k0 + r) * a.ldv + c] : 0.0f;
    }
    __syncthreads();

    float s[RQ];
#pragma unroll
    for (int i = 0; i < RQ; ++i) s[i] = 0.0f;
    const float* krow = sK + lane * (D + 1);
#pragma unroll 8
    for (int c = 0; c < D; ++c) {
      float kv = krow[c];
#pragma unroll
      for (int i = 0; i < RQ; ++i) s[i] = fmaf(myq[i * D + c], kv, s[i]);
    }
    const bool valid = k0 + lane < a.lkv;
    float p[RQ];
#pragma unroll
    for (int i = 0; i < RQ; ++i) {
      const bool visible = valid && (!a.causal || k0 + lane <= q0 + warp * RQ + i);
      float t = visible ? s[i] * a.scale_log2 : -INFINITY;
      float m_new = fmaxf(m[i], warp_max(t));
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // see attn_mma
      float alpha = exp2f(m[i] - m_use);
      p[i] = exp2f(t - m_use);
      l[i] = l[i] * alpha + p[i];  // per-lane partial; reduced over the warp at the end
      m[i] = m_new;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[i][e] *= alpha;
    }
    if (KV_SHARED) {
      __syncthreads();  // every warp is done reading sK (its scores are in registers)
      for (int idx = threadIdx.x; idx < BK * D; idx += 128) {
        int r = idx / D, c = idx % D;
        bool valid = k0 + r < a.lkv && c < a.d;
        sV[r * D + c] = valid ? vg[(long long)(k0 + r) * a.ldv + c] : 0.0f;
      }
      __syncthreads();
    }
    const int kmax = min(BK, kend - k0);
    for (int kk = 0; kk < kmax; ++kk) {
      float vv[E];
#pragma unroll
      for (int e = 0; e < E; ++e) vv[e] = sV[kk * D + lane + 32 * e];
#pragma unroll
      for (int i = 0; i < RQ; ++i) {
        float pk = __shfl_sync(0xffffffffu, p[i], kk);
#pragma unroll
        for (int e = 0; e < E; ++e) acc[i][e] = fmaf(pk, vv[e], acc[i][e]);
      }
    }
  }

  float* og = static_cast<float*>(a.o) + (long long)b * a.lq * a.ldo + (long long)h * a.d;
#pragma unroll
  for (int i = 0; i < RQ; ++i) {
    const float inv = 1.0f / warp_sum(l[i]);
    const int row = q0 + warp * RQ + i;
    if (row >= a.lq) continue;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      int c = lane + 32 * e;
      if (c < a.d) og[(long long)row * a.ldo + c] = acc[i][e] * inv;
    }
  }
}

// ---- launchers -------------------------------------------------------------------------------
// tile: attention_tile's choice for this call (attention_tiles.h); its bytes are the kernel's layout by construction.
template <class T, int D, int BK>
void launch_mma(const AttnArgs& a, const AttentionTile& tile, cudaStream_t stream) {
  constexpr int DO = attention_mma_out_cols(D);
  constexpr size_t smem = attention_mma_smem(D, BK, sizeof(T));
  DIFFRT_REQUIRE(tile.smem_bytes == smem, ErrorCode::Internal, "attention: tile bytes disagree with the kernel's");
  void (*kernel)(AttnArgs);  // one entry point instantiated per D
  if constexpr (D <= 64) kernel = attn_mma_small<T, D, DO, BK>;
  else kernel = attn_mma<T, D, DO, BK>;
  ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);
  AttnArgs args = a;
  args.nchunks = int(ceil_div(a.d, DO));  // chunks wholly past head_dim are not launched
  dim3 grid(unsigned(ceil_div(a.lq, 64)), unsigned(a.heads * args.nchunks), unsigned(a.batch));
  kernel<<<grid, 128, smem, stream>>>(args);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

template <int D, bool KV_SHARED>
void launch_f32(const AttnArgs& a, const AttentionTile& tile, cudaStream_t stream) {
  constexpr size_t smem = attention_f32_smem(D, KV_SHARED);
  DIFFRT_REQUIRE(tile.smem_bytes == smem, ErrorCode::Internal, "attention: tile bytes disagree with the kernel's");
  auto kernel = attn_f32<D, KV_SHARED>;
  ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);
  dim3 grid(unsigned(ceil_div(a.lq, 16)), unsigned(a.heads), unsigned(a.batch));
  kernel<<<grid, 128, smem, stream>>>(a);
  DIFFRT_CUDA_CHECK_LAUNCH();
}

[[noreturn]] void no_instantiation(const AttentionTile& t) {
  fail(ErrorCode::Internal, "attention: no kernel for bucket " + std::to_string(t.head_dim_bucket) + " kv_tile " +
                                std::to_string(t.kv_tile) + (t.kv_shared ? " kv_shared" : ""));
}

// The tile comes from attention_tile (attention_tiles.h), so what tests and benchmarks report is what runs; each
// (bucket, kv_tile) it can return has its instantiation here.
template <class T>
void dispatch_mma(const AttnArgs& a, const AttentionTile& t, cudaStream_t stream) {
  switch (t.head_dim_bucket) {
    case 32: launch_mma<T, 32, 64>(a, t, stream); break;
    case 48: launch_mma<T, 48, 64>(a, t, stream); break;
    case 64: launch_mma<T, 64, 64>(a, t, stream); break;
    case 80: launch_mma<T, 80, 64>(a, t, stream); break;
    case 128: launch_mma<T, 128, 64>(a, t, stream); break;
    case 160: launch_mma<T, 160, 32>(a, t, stream); break;
    case 256: launch_mma<T, 256, 32>(a, t, stream); break;
    case 512:
      if (t.kv_tile == 32) launch_mma<T, 512, 32>(a, t, stream);
      else if (t.kv_tile == 16) launch_mma<T, 512, 16>(a, t, stream);
      else no_instantiation(t);
      break;
    default: no_instantiation(t);
  }
}

void dispatch_f32(const AttnArgs& a, const AttentionTile& t, cudaStream_t stream) {
  if (t.kv_tile != 32 || (t.kv_shared && t.head_dim_bucket != 512)) no_instantiation(t);
  switch (t.head_dim_bucket) {
    case 32: launch_f32<32, false>(a, t, stream); break;
    case 64: launch_f32<64, false>(a, t, stream); break;
    case 96: launch_f32<96, false>(a, t, stream); break;
    case 128: launch_f32<128, false>(a, t, stream); break;
    case 160: launch_f32<160, false>(a, t, stream); break;
    case 256: launch_f32<256, false>(a, t, stream); break;
    case 512:
      if (t.kv_shared) launch_f32<512, true>(a, t, stream);
      else launch_f32<512, false>(a, t, stream);
      break;
    default: no_instantiation(t);
  }
}

}  // namespace

namespace {
void attention_run(const AttentionParams& p, cudaStream_t stream, size_t smem_optin) {
  DIFFRT_REQUIRE(p.q && p.k && p.v && p.o, ErrorCode::InvalidArgument, "attention_cuda: null pointer");
  DIFFRT_REQUIRE(p.batch > 0 && p.heads > 0 && p.lq > 0 && p.lkv > 0 && p.head_dim > 0,
                 ErrorCode::InvalidArgument,
                 "attention_cuda: bad shape batch=" + std::to_string(p.batch) + " heads=" +
                     std::to_string(p.heads) + " lq=" + std::to_string(p.lq) + " lkv=" +
                     std::to_string(p.lkv) + " head_dim=" + std::to_string(p.head_dim));
  DIFFRT_REQUIRE(p.head_dim <= 512, ErrorCode::Unsupported,
                 "attention_cuda: head_dim " + std::to_string(p.head_dim) + " > 512");
  const long long hd = (long long)p.heads * p.head_dim;
  DIFFRT_REQUIRE(p.ldq >= hd && p.ldk >= hd && p.ldv >= hd && p.ldo >= hd, ErrorCode::InvalidArgument,
                 "attention_cuda: a row stride is smaller than heads * head_dim");
  DIFFRT_REQUIRE(p.batch <= 65535 && p.heads * (p.head_dim > 160 ? 4 : 1) <= 65535,
                 ErrorCode::Unsupported, "attention_cuda: batch or heads too large for the grid");
  DIFFRT_REQUIRE(std::isfinite(p.scale), ErrorCode::InvalidArgument, "attention_cuda: scale not finite");

  AttnArgs a{p.q, p.k, p.v, p.o, p.batch, p.heads, p.lq, p.lkv, p.head_dim,
             p.ldq, p.ldk, p.ldv, p.ldo, p.scale * kLog2e, 1, false, p.causal};
  a.vec = p.dtype != DType::F32 && p.head_dim % 8 == 0 && p.ldq % 8 == 0 && p.ldk % 8 == 0 &&
          p.ldv % 8 == 0 && p.ldo % 8 == 0 && aligned_to(p.q, 16) && aligned_to(p.k, 16) &&
          aligned_to(p.v, 16) && aligned_to(p.o, 16);
  const AttentionTile tile = attention_tile(p.head_dim, p.dtype, smem_optin);
  switch (p.dtype) {
    case DType::F32: dispatch_f32(a, tile, stream); break;
    case DType::F16: dispatch_mma<__half>(a, tile, stream); break;
    case DType::BF16: dispatch_mma<__nv_bfloat16>(a, tile, stream); break;
  }
}
}  // namespace

void attention_cuda(const AttentionParams& p, cudaStream_t stream) { attention_run(p, stream, device_smem_optin()); }

void attention_cuda_with_smem_limit(const AttentionParams& p, cudaStream_t stream, size_t smem_optin) {
  attention_run(p, stream, std::min(smem_optin, device_smem_optin()));
}

}  // namespace diffrt
