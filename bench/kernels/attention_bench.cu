// attention cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   attention    q [B, Lq, H d], k, v [B, Lkv, H d] -> o [B, Lq, H d].  F = 4 B H Lq Lkv d (QK^T and PV;
//                softmax not counted; causal cases count the visible (Lq + 1) / 2Lq of it),
//                B = (2 B Lq H d + 2 B Lkv H d) s. Causal cases (CLIP's text encoder) time diffrt only.
//                impls: diffrt (attention_cuda, fused), naive_cublas (cublasGemmBatchedEx S = Q K^T, one
//                softmax kernel writing P in the storage dtype, cublasGemmBatchedEx O = P V; S/P
//                materialised: extra 2 B H Lq Lkv s bytes each way). cuDNN's fused attention needs the
//                cudnn-frontend graph API, which this build does not have; cudnnMultiHeadAttnForward
//                (legacy, deprecated in cuDNN 9) is unfused and adds projections, so it is not used.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "bench/kernels/baseline_math.cuh"
#include "kernels/attention/attention.h"

namespace bench {
namespace {

// Row softmax in place over `cols` with a scale: p = exp(s*scale - max) / sum. One block per row.
template <class T>
__global__ void softmax_rows(T* s, int cols, float scale) {
  __shared__ float sm[32];
  T* row = s + size_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, ld(row, j) * scale);
  m = block_max(m, sm);
  float sum = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += __expf(ld(row, j) * scale - m);
  sum = block_sum(sum, sm);
  float inv = 1.f / sum;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) st(row, j, __expf(ld(row, j) * scale - m) * inv);
}

}  // namespace

void add_attention_cases(std::vector<Case>& cases, const Options& o) {
  struct A {
    std::string name; std::vector<int> batches; int heads, lq, lkv, d; std::vector<DType> dts;
    bool causal = false;
  };
  std::vector<A> as = {
      {"sd64_selfattn_T4096_d40_h8", {2}, 8, 4096, 4096, 40, kHalves},
      {"T4096_d64_h8", {2}, 8, 4096, 4096, 64, kHalves},
      {"sd32_selfattn_T1024_d80_h8", {2}, 8, 1024, 1024, 80, kHalves},
      {"sd16_selfattn_T256_d160_h8", {2}, 8, 256, 256, 160, kHalves},
      {"sd64_crossattn_Lq4096_Lkv77_d40_h8", {2}, 8, 4096, 77, 40, kHalves},
      {"sd16_crossattn_Lq256_Lkv77_d160_h8", {2}, 8, 256, 77, 160, kHalves},
      {"ddpm_cifar_T256_d256_h1", o.quick ? std::vector<int>{1, 256} : std::vector<int>{1, 64, 256}, 1, 256, 256, 256, kHalfAndFloat},
      {"ddpm_cifar_mid_T16_d256_h1", {1, 256}, 1, 16, 16, 256, kHalfAndFloat},
      {"ddpm_celebahq_T256_d512_h1", {1, 16}, 1, 256, 256, 512, kHalfAndFloat},
      {"clip_causal_T77_d64_h12", {2}, 12, 77, 77, 64, kHalfAndFloat, true},  // SD 1.x text encoder, CFG
      {"clip_causal_T77_d64_h16", {2}, 16, 77, 77, 64, kHalves, true},        // SD 2.x (OpenCLIP-H)
      // DiT-XL/2: 16 heads of 72 (the 80 bucket), batch 1 with CFG (2) and batch 32 with CFG (64).
      {"dit256_selfattn_T256_d72_h16", {2, 64}, 16, 256, 256, 72, kHalfAndFloat},
      {"dit512_selfattn_T1024_d72_h16", {2, 64}, 16, 1024, 1024, 72, kHalves},
  };
  for (const A& a : as)
    for (DType t : dtypes_for(o, a.dts))
      for (int b : a.batches) {
        cases.push_back({"attention", a.name + "_B" + std::to_string(b), diffrt::dtype_name(t), [=](Ctx& c) {
          const int hd = a.heads * a.d;
          const size_t nq = size_t(b) * a.lq * hd, nkv = size_t(b) * a.lkv * hd;
          bench::DevArray q(nq, t, 31), k(nkv, t, 32), v(nkv, t, 33), out(nq, t, 34);
          diffrt::AttentionParams p;
          p.q = q.get(); p.k = k.get(); p.v = v.get(); p.o = out.get();
          p.batch = b; p.heads = a.heads; p.lq = a.lq; p.lkv = a.lkv; p.head_dim = a.d;
          p.ldq = p.ldk = p.ldv = p.ldo = hd;
          p.scale = 1.0f / std::sqrt(float(a.d));
          p.causal = a.causal;
          p.dtype = t;
          const size_t es = diffrt::dtype_size(t);
          const double visible = a.causal ? (a.lq + 1.0) / (2.0 * a.lq) : 1.0;
          const double flops = 4.0 * b * a.heads * double(a.lq) * a.lkv * a.d * visible;
          const double bytes = double(2 * nq + 2 * nkv) * es;
          const diffrt::AttentionLaunch al = diffrt::attention_cuda_launch(p);
          const std::string path = std::string(al.tensor_cores ? "mma" : "simt") + " d" + std::to_string(al.head_dim_bucket);
          c.measure("diffrt", flops, bytes, [&] { diffrt::attention_cuda(p, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); },
                    a.causal ? "causal, " + path : path);
          if (a.causal) return;  // the naive softmax below has no mask

          // Naive: batched GEMMs through cuBLAS over (b, h) pointer arrays, S materialised in dtype t.
          const int bh = b * a.heads;
          const size_t ns = size_t(bh) * a.lq * a.lkv;
          bench::DevArray sbuf(ns, t, 35);
          std::vector<const void*> hq(bh), hk(bh), hv(bh);
          std::vector<void*> hs(bh), ho(bh);
          for (int i = 0; i < b; ++i)
            for (int h = 0; h < a.heads; ++h) {
              int j = i * a.heads + h;
              hq[j] = static_cast<const char*>(q.get()) + (size_t(i) * a.lq * hd + size_t(h) * a.d) * es;
              hk[j] = static_cast<const char*>(k.get()) + (size_t(i) * a.lkv * hd + size_t(h) * a.d) * es;
              hv[j] = static_cast<const char*>(v.get()) + (size_t(i) * a.lkv * hd + size_t(h) * a.d) * es;
              ho[j] = static_cast<char*>(out.get()) + (size_t(i) * a.lq * hd + size_t(h) * a.d) * es;
              hs[j] = static_cast<char*>(sbuf.get()) + size_t(j) * a.lq * a.lkv * es;
            }
          diffrt::DeviceBuffer ptrs(5 * size_t(bh) * sizeof(void*));
          void** dp = ptrs.as<void*>();
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 0 * bh, hq.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 1 * bh, hk.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 2 * bh, hv.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 3 * bh, hs.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          DIFFRT_CUDA_CHECK(cudaMemcpy(dp + 4 * bh, ho.data(), bh * sizeof(void*), cudaMemcpyHostToDevice));
          const cudaDataType_t ct = cuda_type(t);
          const float one = 1.f, zero = 0.f;
          c.measure("naive_cublas", flops, bytes, [&] {
            // Row-major S[Lq, Lkv] = Q K^T is column-major S^T = K Q^T: op(A)=T on K (d x Lkv, ld hd).
            DIFFRT_CUDA_CHECK(cublasGemmBatchedEx(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, a.lkv, a.lq, a.d, &one,
                                                  (const void* const*)(dp + 1 * bh), ct, hd,
                                                  (const void* const*)(dp + 0 * bh), ct, hd, &zero,
                                                  (void* const*)(dp + 3 * bh), ct, a.lkv, bh, CUBLAS_COMPUTE_32F,
                                                  CUBLAS_GEMM_DEFAULT));
            unsigned rows = unsigned(size_t(bh) * a.lq);
            int threads = a.lkv >= 1024 ? 512 : (a.lkv >= 256 ? 256 : 128);
            if (t == DType::F32) softmax_rows<float><<<rows, threads, 0, c.stream>>>(sbuf.as<float>(), a.lkv, p.scale);
            else if (t == DType::F16) softmax_rows<__half><<<rows, threads, 0, c.stream>>>(sbuf.as<__half>(), a.lkv, p.scale);
            else softmax_rows<__nv_bfloat16><<<rows, threads, 0, c.stream>>>(sbuf.as<__nv_bfloat16>(), a.lkv, p.scale);
            DIFFRT_CUDA_CHECK_LAUNCH();
            // Row-major O[Lq, d] = P V is column-major O^T = V^T P^T: A = V (d x Lkv, ld hd), B = P (Lkv x Lq).
            DIFFRT_CUDA_CHECK(cublasGemmBatchedEx(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, a.d, a.lq, a.lkv, &one,
                                                  (const void* const*)(dp + 2 * bh), ct, hd,
                                                  (const void* const*)(dp + 3 * bh), ct, a.lkv, &zero,
                                                  (void* const*)(dp + 4 * bh), ct, hd, bh, CUBLAS_COMPUTE_32F,
                                                  CUBLAS_GEMM_DEFAULT));
          }, "GEMM + softmax + GEMM, S in " + std::string(diffrt::dtype_name(t)));
        }});
      }
}

}  // namespace bench
