// timestep_embedding_cuda / timestep_embedding_steps_cuda vs timestep_embedding_ref: CIFAR (dim 128,
// T 512, shift 1), SD (dim 320, T 1280, flip, shift 0), an odd dim with a class table, timesteps
// including 0, 1, 500.5 and 999 (arguments ~1000 rad), batch 1..8, all dtypes, and a whole run of steps
// at once.
#include "kernels/timestep_embedding/timestep_embedding.h"

#include "kernels/common/kernel_attrs.h"

#include <string>
#include <vector>

#include "kernels/timestep_embedding/timestep_embedding_cuda.h"
#include "tests/gpu/gpu_test_util.h"

namespace diffrt::test {
namespace {

struct TembCase {
  int n, dim, t_dim;
  bool flip;
  float shift;
  int classes;
  int steps;
};

int g_cases_run = 0;  // counted so a GPU run never passes without checking anything

void run_case(const TembCase& s, DType t) {
  ++g_cases_run;
  const uint32_t seed = uint32_t(s.n * 17 + s.dim * 3 + s.t_dim + s.classes + s.steps);
  const int rows = s.n * s.steps;
  std::vector<float> ts = random_uniform(size_t(rows), seed, 0.0f, 1000.0f);
  const float fixed[] = {0.0f, 1.0f, 999.0f, 500.5f};
  for (int i = 0; i < rows && i < 4; ++i) ts[i] = fixed[i];
  std::vector<int32_t> labels(s.n);
  for (int i = 0; i < s.n; ++i) labels[i] = s.classes ? (i * 7 + 3) % s.classes : 0;
  std::vector<float> w1 = random_normal(size_t(s.t_dim) * s.dim, seed + 1, 0.0f, 1.0f / std::sqrt(float(s.dim)));
  std::vector<float> b1 = random_normal(s.t_dim, seed + 2, 0.0f, 0.1f);
  std::vector<float> w2 = random_normal(size_t(s.t_dim) * s.t_dim, seed + 3, 0.0f, 1.0f / std::sqrt(float(s.t_dim)));
  std::vector<float> b2 = random_normal(s.t_dim, seed + 4, 0.0f, 0.1f);
  std::vector<float> table = random_normal(size_t(std::max(s.classes, 1)) * s.t_dim, seed + 5);

  DevTensor dts(ts.size(), DType::F32);
  dts.upload(ts);
  DeviceBuffer dlabels(labels.size() * sizeof(int32_t));
  DIFFRT_CUDA_CHECK(cudaMemcpy(dlabels.get(), labels.data(), labels.size() * 4, cudaMemcpyHostToDevice));
  DevTensor dw1 = upload_rounded(w1, t), db1 = upload_rounded(b1, t), dw2 = upload_rounded(w2, t);
  DevTensor db2 = upload_rounded(b2, t), dtab = upload_rounded(table, t);
  DevTensor dout(size_t(rows) * s.t_dim, t);
  dout.poison();

  TimestepEmbeddingParams p;
  p.timesteps = static_cast<const float*>(dts.ptr());
  p.class_labels = s.classes ? dlabels.as<int32_t>() : nullptr;
  p.w1 = dw1.ptr();
  p.b1 = db1.ptr();
  p.w2 = dw2.ptr();
  p.b2 = db2.ptr();
  p.class_table = s.classes ? dtab.ptr() : nullptr;
  p.out = dout.ptr();
  p.n = s.n;
  p.dim = s.dim;
  p.out_dim = s.t_dim;
  p.num_classes = s.classes;
  p.flip = s.flip;
  p.freq_shift = s.shift;
  p.dtype = t;
  if (s.steps == 1) timestep_embedding_cuda(p, nullptr);
  else timestep_embedding_steps_cuda(p, s.steps, nullptr);

  // Reference: one call per step (labels repeat per step).
  std::vector<float> ref(size_t(rows) * s.t_dim);
  for (int st = 0; st < s.steps; ++st) {
    TimestepEmbeddingParams r = p;
    r.timesteps = ts.data() + size_t(st) * s.n;
    r.class_labels = s.classes ? labels.data() : nullptr;
    r.w1 = w1.data();
    r.b1 = b1.data();
    r.w2 = w2.data();
    r.b2 = b2.data();
    r.class_table = s.classes ? table.data() : nullptr;
    r.out = ref.data() + size_t(st) * s.n * s.t_dim;
    r.dtype = DType::F32;
    timestep_embedding_ref(r);
  }
  const std::string what = "temb n=" + std::to_string(s.n) + " dim=" + std::to_string(s.dim) + " T=" +
                           std::to_string(s.t_dim) + (s.flip ? " flip" : "") + " shift=" + std::to_string(s.shift) +
                           " classes=" + std::to_string(s.classes) + " steps=" + std::to_string(s.steps) + " " +
                           dtype_name(t);
  expect_output_ok(dout, ref, what);
}

TEST(TimestepEmbeddingGpu, ModelConfigs) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const TembCase cases[] = {
      {1, 128, 512, false, 1.0f, 0, 1},  {8, 128, 512, false, 1.0f, 0, 1},  {2, 320, 1280, true, 0.0f, 0, 1},
      {4, 33, 200, true, 1.0f, 10, 1},   {3, 64, 256, false, 0.0f, 1000, 1}, {1, 2, 8, false, 0.0f, 0, 1},
  };
  for (const TembCase& s : cases)
    for (DType t : kAllDtypes) run_case(s, t);
}

TEST(TimestepEmbeddingGpu, AllStepsAtOnce) {
  DIFFRT_SKIP_WITHOUT_GPU();
  for (DType t : kAllDtypes) {
    run_case({2, 128, 512, false, 1.0f, 0, 50}, t);
    run_case({2, 320, 1280, true, 0.0f, 10, 7}, t);
  }
}

// dim + out_dim above 12288 floats needs more than 48 KiB of dynamic shared memory: the kernel's limit is
// raised once per kernel and device (kernels/common/kernel_attrs.h), not on every launch.
TEST(TimestepEmbeddingGpu, LargeSharedMemorySetsTheAttributeOnce) {
  DIFFRT_SKIP_WITHOUT_GPU();
  const int before = g_cases_run;
  for (DType t : kAllDtypes) {
    const TembCase big{2, 12000, 512, false, 1.0f, 0, 1};  // (12000 + 512) * 4 = 50,048 bytes
    const size_t c0 = dynamic_smem_attribute_calls();
    run_case(big, t);
    const size_t c1 = dynamic_smem_attribute_calls();
    EXPECT_LE(c1 - c0, 1u) << dtype_name(t);
    run_case(big, t);
    run_case(big, t);
    EXPECT_EQ(dynamic_smem_attribute_calls(), c1) << dtype_name(t) << ": the attribute was set again";
  }
  EXPECT_EQ(g_cases_run - before, 9);
}

}  // namespace
}  // namespace diffrt::test
