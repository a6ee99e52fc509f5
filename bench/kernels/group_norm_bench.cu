// group_norm cases of diffrt_kernel_bench (minimal bytes B, FLOPs F; s = dtype size):
//   group_norm   x [N, HW, C] -> y, G = 32, SiLU fused.  B = 2 N HW C s (+ 2 C s gamma/beta), F = 0.
//                impls: diffrt (group_norm_cuda: stats + apply, really 2 reads + 1 write, the 2nd read
//                mostly from L2), naive (one kernel per statistic: mean, variance, then apply: 3 reads +
//                1 write, one block per (n, group)).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include "bench/kernels/harness.cuh"
#include "bench/kernels/baseline_math.cuh"
#include "kernels/group_norm/group_norm.h"

namespace bench {
namespace {

// Naive GroupNorm, NHWC: block per (n, g); element i of the group is (row i / cpg, channel g*cpg + i % cpg).
template <class T>
__global__ void gn_naive_mean(const T* x, float* mean, int hw, int c, int groups) {
  __shared__ float sm[32];
  int ng = blockIdx.x, n = ng / groups, g = ng % groups, cpg = c / groups;
  size_t cnt = size_t(hw) * cpg;
  const T* base = x + size_t(n) * hw * c + size_t(g) * cpg;
  float s = 0;
  for (size_t i = threadIdx.x; i < cnt; i += blockDim.x) s += ld(base, (i / cpg) * c + i % cpg);
  s = block_sum(s, sm);
  if (threadIdx.x == 0) mean[ng] = s / float(cnt);
}
template <class T>
__global__ void gn_naive_var(const T* x, const float* mean, float* rstd, int hw, int c, int groups, float eps) {
  __shared__ float sm[32];
  int ng = blockIdx.x, n = ng / groups, g = ng % groups, cpg = c / groups;
  size_t cnt = size_t(hw) * cpg;
  const T* base = x + size_t(n) * hw * c + size_t(g) * cpg;
  float mu = mean[ng], s = 0;
  for (size_t i = threadIdx.x; i < cnt; i += blockDim.x) {
    float d = ld(base, (i / cpg) * c + i % cpg) - mu;
    s += d * d;
  }
  s = block_sum(s, sm);
  if (threadIdx.x == 0) rstd[ng] = rsqrtf(s / float(cnt) + eps);
}
template <class T>
__global__ void gn_naive_apply(const T* x, T* y, const T* gamma, const T* beta, const float* mean,
                               const float* rstd, size_t total, int hw, int c, int groups) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    int ch = int(i % c);
    int n = int(i / (size_t(hw) * c));
    int ng = n * groups + ch / (c / groups);
    float v = (ld(x, i) - mean[ng]) * rstd[ng] * ld(gamma, ch) + ld(beta, ch);
    v = v / (1.f + __expf(-v));
    st(y, i, v);
  }
}

}  // namespace

void add_group_norm_cases(std::vector<Case>& cases, const Options& o) {
  struct S { int h, w, c; };
  const S shapes[] = {{32, 32, 128}, {16, 16, 256}, {64, 64, 320}, {9, 9, 1280}};
  std::vector<int> ns = o.quick ? std::vector<int>{1, 8} : std::vector<int>{1, 8, 64};
  for (DType t : dtypes_for(o, kHalfAndFloat))
    for (const S& s : shapes)
      for (int n : ns) {
        std::string name = std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) + "_N" + std::to_string(n);
        cases.push_back({"group_norm", name, diffrt::dtype_name(t), [=](Ctx& c) {
          const int hw = s.h * s.w, groups = 32;
          const size_t count = size_t(n) * hw * s.c;
          bench::DevArray x(count, t, 21), y(count, t, 22), gamma(s.c, t, 23, 0.5f, 1.5f), beta(s.c, t, 24);
          diffrt::GroupNormParams p;
          p.x = x.get(); p.y = y.get(); p.gamma = gamma.get(); p.beta = beta.get();
          p.n = n; p.hw = hw; p.c = s.c; p.groups = groups; p.eps = 1e-6f; p.silu = true; p.dtype = t;
          diffrt::DeviceBuffer ws(diffrt::group_norm_workspace_bytes(p));
          p.workspace = ws.get(); p.workspace_bytes = ws.bytes();
          const double bytes = 2.0 * count * diffrt::dtype_size(t) + 2.0 * s.c * diffrt::dtype_size(t);
          c.measure("diffrt", 0, bytes, [&] { diffrt::group_norm_cuda(p, c.stream); DIFFRT_CUDA_CHECK_LAUNCH(); });
          diffrt::DeviceBuffer stats(size_t(n) * groups * 2 * sizeof(float));
          float* mean = stats.as<float>();
          float* rstd = mean + size_t(n) * groups;
          auto naive = [&](auto tag) {
            using T = decltype(tag);
            const T* xp = x.as<T>();
            gn_naive_mean<T><<<n * groups, 256, 0, c.stream>>>(xp, mean, hw, s.c, groups);
            gn_naive_var<T><<<n * groups, 256, 0, c.stream>>>(xp, mean, rstd, hw, s.c, groups, 1e-6f);
            gn_naive_apply<T><<<ew_blocks(count), 256, 0, c.stream>>>(xp, y.as<T>(), gamma.as<T>(), beta.as<T>(), mean, rstd,
                                                                       count, hw, s.c, groups);
            DIFFRT_CUDA_CHECK_LAUNCH();
          };
          c.measure("naive", 0, bytes, [&] {
            if (t == DType::F32) naive(float{});
            else if (t == DType::F16) naive(__half{});
            else naive(__nv_bfloat16{});
          }, "3 kernels: mean, var, apply");
        }});
      }
}

}  // namespace bench
