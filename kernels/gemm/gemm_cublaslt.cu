// Linear layer on cuBLASLt:
//   y[m, n] = (sum_k act(x[m, k]) w[n, k] + bias[n] + residual[m, n]) * out_scale,  act = SiLU or identity
// Layout: x [M, K], w [N, K] (PyTorch nn.Linear), y/residual [M, N], all row-major, one dtype.
// cuBLASLt is column-major, so we compute the transposed problem y^T = w x^T: A = w seen as a
// column-major K x N matrix with op T, B = x seen as column-major K x M with op N, D = y^T column-major
// N x M (ld N). The bias then runs along D's rows, which is what CUBLASLT_EPILOGUE_BIAS broadcasts.
// Epilogues (chosen per call, part of the plan key):
//   no bias:             alpha = s, beta = s (C = residual) or 0             -> exact, one kernel
//   bias, s == 1:        BIAS epilogue, beta = 1 with C = residual or 0      -> one kernel
//   bias, s != 1:        as above, then a small in-place scale kernel (y *= s)
// silu_input: a tiny pre-kernel writes silu(x) into a context-owned scratch buffer that feeds the GEMM.
// gate (DiT's adaLN-Zero residual): the GEMM (+ bias epilogue) writes t into y, then one elementwise pass
// y = residual + gate[m / rows_per_gate, n] * y (16-byte vectors when N, gate_ld and the pointers allow). cuBLASLt
// has no per-sample column scale with a residual (its alpha vector is per column only, and the bias would have to
// be pre-scaled per sample), so the gate costs one extra read+write of y; a CUTLASS epilogue could fold it in.
// Compute is fp32 (CUBLAS_COMPUTE_32F) for every dtype; fp32 inputs use TF32 only when the context's
// allow_tf32 option says so (off by default: fp32 is the exact path).
// Plans (descriptors + the heuristic's first algorithm, given the real pointer alignments) are cached
// per shape in the context.
//
// Test: tests/gpu/gemm_test.cpp (vs linear_ref; bias/residual/scale/silu combinations, odd sizes, all
// dtypes). Benchmark: bench (TFLOP/s = 2*M*N*K / time against the measured GEMM rate).
#include <algorithm>
#include <initializer_list>
#include <string>

#include "kernels/common/cuda_types.cuh"
#include "kernels/gemm/gemm_cuda.h"

namespace diffrt {

struct CublasLtContext::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

CublasLtContext::CublasLtContext() : CublasLtContext(Options{}) {}
CublasLtContext::CublasLtContext(const Options& opt) : opt_(opt) {
  DIFFRT_CUDA_CHECK(cublasLtCreate(&handle_));
  try {
    workspace_.allocate(opt_.workspace_bytes);
  } catch (...) {
    cublasLtDestroy(handle_);
    throw;
  }
}
CublasLtContext::~CublasLtContext() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

namespace {

template <class T>
__global__ void silu_kernel(const T* __restrict__ x, T* __restrict__ y, long long count) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
       i += (long long)gridDim.x * blockDim.x)
    y[i] = from_f<T>(silu_f(to_f(x[i])));
}
template <class T>
__global__ void scale_kernel(T* y, long long count, float s) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
       i += (long long)gridDim.x * blockDim.x)
    y[i] = from_f<T>(to_f(y[i]) * s);
}

// y[m, n] = res[m, n] + gate[(m / rpg) * ld + n] * y[m, n], V elements per thread (n0 multiple of V).
template <class T, int V>
__global__ void gated_residual_kernel(T* y, const T* __restrict__ res, const T* __restrict__ gate, long long m,
                                      int n, long long ld, long long rpg) {
  const int nv = n / V;
  const long long total = m * nv;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long row = i / nv;
    const int c0 = int(i % nv) * V;
    float t[V], r[V], g[V];
    load_vec<T, V>(y + row * n + c0, t);
    load_vec_ro<T, V>(res + row * n + c0, r);
    load_vec_ro<T, V>(gate + (row / rpg) * ld + c0, g);
#pragma unroll
    for (int j = 0; j < V; ++j) t[j] = fmaf(g[j], t[j], r[j]);
    store_vec<T, V>(y + row * n + c0, t);
  }
}

unsigned grid_for(long long work) {
  return unsigned(std::max<long long>(1, std::min<long long>(ceil_div(work, 256), 1 << 16)));
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

int alignment_of(std::initializer_list<const void*> ptrs) {
  int a = 16;
  for (const void* p : ptrs)
    while (a > 1 && p && !aligned_to(p, size_t(a))) a /= 2;
  return a;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  DIFFRT_CUDA_CHECK(cudaStreamIsCapturing(stream, &st));
  return st != cudaStreamCaptureStatusNone;
}

}  // namespace

namespace {
template <class T>
void launch_gated(const LinearParams& p, cudaStream_t stream) {
  T* y = static_cast<T*>(p.y);
  const T* res = static_cast<const T*>(p.residual);
  const T* gate = static_cast<const T*>(p.gate);
  constexpr int kV = kVecElems<T>;
  const bool vec = p.n % kV == 0 && p.gate_ld % kV == 0 && aligned_to(y, 16) && aligned_to(res, 16) &&
                   aligned_to(gate, 16);
  const long long work = (long long)p.m * p.n / (vec ? kV : 1);
  if (vec)
    gated_residual_kernel<T, kV><<<grid_for(work), 256, 0, stream>>>(y, res, gate, p.m, p.n, p.gate_ld, p.rows_per_gate);
  else
    gated_residual_kernel<T, 1><<<grid_for(work), 256, 0, stream>>>(y, res, gate, p.m, p.n, p.gate_ld, p.rows_per_gate);
  DIFFRT_CUDA_CHECK_LAUNCH();
}
}  // namespace

void linear_cuda(const LinearParams& p, CublasLtContext& ctx, cudaStream_t stream) {
  DIFFRT_REQUIRE(p.x && p.w && p.y, ErrorCode::InvalidArgument, "linear_cuda: null x, w or y");
  if (p.gate) {
    DIFFRT_REQUIRE(p.residual && p.residual != p.y && p.out_scale == 1.0f && p.gate_ld >= p.n &&
                       p.rows_per_gate >= 1 && p.m % p.rows_per_gate == 0,
                   ErrorCode::InvalidArgument,
                   "linear_cuda: a gated linear needs a residual other than y, out_scale 1, gate_ld >= N and M a "
                   "multiple of rows_per_gate");
    LinearParams q = p;  // t = act(x) w^T + bias into y, then the gated residual in place
    q.residual = nullptr;
    q.gate = nullptr;
    linear_cuda(q, ctx, stream);
    switch (p.dtype) {
      case DType::F32: launch_gated<float>(p, stream); break;
      case DType::F16: launch_gated<__half>(p, stream); break;
      case DType::BF16: launch_gated<__nv_bfloat16>(p, stream); break;
    }
    return;
  }
  DIFFRT_REQUIRE(p.m > 0 && p.n > 0 && p.k > 0, ErrorCode::InvalidArgument,
                 "linear_cuda: bad shape m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) +
                     " k=" + std::to_string(p.k));
  DIFFRT_REQUIRE(p.y != p.x && p.y != p.w, ErrorCode::InvalidArgument, "linear_cuda: y aliases x or w");
  const size_t es = dtype_size(p.dtype);
  const long long mk = (long long)p.m * p.k, mn = (long long)p.m * p.n;

  // silu(x) into scratch.
  const void* x = p.x;
  if (p.silu_input) {
    const size_t need = size_t(mk) * es;
    if (ctx.silu_scratch_.bytes() < need) {
      DIFFRT_REQUIRE(!capturing(stream), ErrorCode::InvalidArgument,
                     "linear_cuda: silu scratch must grow during CUDA graph capture; run the shape once first");
      DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));  // the old scratch may still be in use
      ctx.silu_scratch_.reserve(need);
    }
    switch (p.dtype) {
      case DType::F32: silu_kernel<float><<<grid_for(mk), 256, 0, stream>>>(static_cast<const float*>(p.x), ctx.silu_scratch_.as<float>(), mk); break;
      case DType::F16: silu_kernel<__half><<<grid_for(mk), 256, 0, stream>>>(static_cast<const __half*>(p.x), ctx.silu_scratch_.as<__half>(), mk); break;
      case DType::BF16: silu_kernel<__nv_bfloat16><<<grid_for(mk), 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(p.x), ctx.silu_scratch_.as<__nv_bfloat16>(), mk); break;
    }
    DIFFRT_CUDA_CHECK_LAUNCH();
    x = ctx.silu_scratch_.get();
  }

  const float s = p.out_scale;
  const int mode = !p.bias ? 0 : (s == 1.0f ? 1 : 2);
  const bool has_res = p.residual != nullptr;
  const int align = alignment_of({x, p.w, p.y, p.residual, p.bias});
  CublasLtContext::Key key{p.m, p.n, p.k, int(p.dtype), p.bias != nullptr, has_res, mode, align};
  auto it = ctx.plans_.find(key);
  if (it == ctx.plans_.end()) {
    auto plan = std::make_unique<CublasLtContext::Plan>();
    const cudaDataType_t dt = cuda_type(p.dtype);
    const cublasComputeType_t ct = (p.dtype == DType::F32 && ctx.opt_.allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                   : CUBLAS_COMPUTE_32F;
    DIFFRT_CUDA_CHECK(cublasLtMatmulDescCreate(&plan->desc, ct, CUDA_R_32F));
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    DIFFRT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
    DIFFRT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
    const cublasLtEpilogue_t epi = p.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    DIFFRT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (p.bias) {
      const void* bias = p.bias;
      DIFFRT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    // A = w: column-major K x N (ld K); B = x: column-major K x M (ld K); C = D = y^T: N x M (ld N).
    DIFFRT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan->a, dt, uint64_t(p.k), uint64_t(p.n), int64_t(p.k)));
    DIFFRT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan->b, dt, uint64_t(p.k), uint64_t(p.m), int64_t(p.k)));
    DIFFRT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&plan->c, dt, uint64_t(p.n), uint64_t(p.m), int64_t(p.n)));

    cublasLtMatmulPreference_t pref = nullptr;
    DIFFRT_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = ctx.workspace_.bytes();
    uint32_t al = uint32_t(align);
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulAlgoGetHeuristic(ctx.handle_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1,
                                          &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    DIFFRT_CUDA_CHECK(st);
    DIFFRT_REQUIRE(found > 0, ErrorCode::Unsupported,
                   "linear_cuda: cuBLASLt has no algorithm for m=" + std::to_string(p.m) + " n=" +
                       std::to_string(p.n) + " k=" + std::to_string(p.k) + " " + dtype_name(p.dtype));
    plan->algo = res.algo;
    plan->workspace = res.workspaceSize;
    it = ctx.plans_.emplace(key, std::move(plan)).first;
  }
  CublasLtContext::Plan& plan = *it->second;
  if (p.bias) {
    const void* bias = p.bias;
    DIFFRT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = mode == 0 ? s : 1.0f;
  const float beta = has_res ? alpha : 0.0f;
  const void* c = has_res ? p.residual : p.y;
  DIFFRT_CUDA_CHECK(cublasLtMatmul(ctx.handle_, plan.desc, &alpha, p.w, plan.a, x, plan.b, &beta, c, plan.c, p.y,
                                   plan.c, &plan.algo, ctx.workspace_.get(), plan.workspace, stream));
  if (mode == 2) {
    switch (p.dtype) {
      case DType::F32: scale_kernel<float><<<grid_for(mn), 256, 0, stream>>>(static_cast<float*>(p.y), mn, s); break;
      case DType::F16: scale_kernel<__half><<<grid_for(mn), 256, 0, stream>>>(static_cast<__half*>(p.y), mn, s); break;
      case DType::BF16: scale_kernel<__nv_bfloat16><<<grid_for(mn), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(p.y), mn, s); break;
    }
    DIFFRT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace diffrt
