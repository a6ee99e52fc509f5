// block_sum (kernels/common/cuda_types.cuh) over every kind of block: whole warps (the launchers' case) and
// thread counts that leave a partial last warp (1, 5, 31, 33, 100, 7x3x2, 1000), 1-D and 3-D blocks. Every
// thread must get the same total, equal to the double-precision sum within fp32 rounding. compute-sanitizer
// (racecheck/synccheck) on this test checks the shuffles and barriers (scripts/gpu_pass.sh).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/common/cuda_types.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

__global__ void block_sum_kernel(const float* x, float* out) {
  __shared__ float scratch[32];
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int nthreads = blockDim.x * blockDim.y * blockDim.z;
  const float v = x[blockIdx.x * nthreads + tid];
  // Twice in a row: the scratch may be reused after the call returns.
  const float a = block_sum(v, scratch);
  const float b = block_sum(2.0f * v, scratch);
  out[2 * (blockIdx.x * nthreads + tid)] = a;
  out[2 * (blockIdx.x * nthreads + tid) + 1] = b;
}

TEST(BlockSumGpu, WholeAndPartialWarps) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const dim3 shapes[] = {dim3(32), dim3(64), dim3(256), dim3(512), dim3(1024), dim3(32, 4), dim3(8, 4, 2),
                         dim3(1), dim3(5), dim3(31), dim3(33), dim3(100), dim3(7, 3, 2), dim3(1000), dim3(995)};
  int cases = 0;
  for (const dim3& b : shapes) {
    const int nt = int(b.x * b.y * b.z), blocks = 3;
    std::vector<float> x = random_normal(size_t(nt) * blocks, uint32_t(nt));
    DevTensor dx(x.size(), DType::F32), dout(x.size() * 2, DType::F32);
    dx.upload(x);
    dout.poison();
    block_sum_kernel<<<blocks, b>>>(static_cast<const float*>(dx.ptr()), static_cast<float*>(dout.ptr()));
    DIFFRT_CUDA_CHECK_LAUNCH();
    sync_check();
    const std::vector<float> got = dout.download();
    const std::string what = "block " + std::to_string(b.x) + "x" + std::to_string(b.y) + "x" + std::to_string(b.z);
    EXPECT_TRUE(dout.guards_intact()) << what;
    for (int blk = 0; blk < blocks; ++blk) {
      double ref = 0, mag = 0;
      for (int i = 0; i < nt; ++i) {
        ref += x[size_t(blk) * nt + i];
        mag += std::fabs(x[size_t(blk) * nt + i]);
      }
      const float a0 = got[2 * size_t(blk) * nt], b0 = got[2 * size_t(blk) * nt + 1];
      EXPECT_NEAR(a0, ref, 1e-6 * mag + 1e-6) << what << " block " << blk;
      EXPECT_NEAR(b0, 2 * ref, 2e-6 * mag + 1e-6) << what << " block " << blk << " (second call)";
      for (int i = 0; i < nt; ++i) {  // bit-identical in every thread
        ASSERT_EQ(got[2 * (size_t(blk) * nt + i)], a0) << what << " thread " << i;
        ASSERT_EQ(got[2 * (size_t(blk) * nt + i) + 1], b0) << what << " thread " << i;
      }
    }
    ++cases;
  }
  EXPECT_EQ(cases, int(sizeof(shapes) / sizeof(shapes[0])));  // never passes without running every shape
}

}  // namespace
}  // namespace diffrt::test
