// The CPU reference backend: runs a planned graph with the *_ref kernels in fp32 (weights of any
// stored dtype are widened once at load). Slow but exact; also the reference of compare mode.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/format/model_file.h"
#include "runtime/plan.h"

namespace diffrt {

// Weights widened to fp32, shared read-only by any number of executors.
class CpuWeights {
 public:
  explicit CpuWeights(const ModelFile& mf);
  const float* get(const std::string& name) const;  // throws naming the tensor if absent

 private:
  std::map<std::string, std::vector<float>> w_;
};

class CpuExecutor {
 public:
  // Plans for batch n at h x w; throws for sizes the network cannot take.
  CpuExecutor(const ModelFile& mf, const CpuWeights& weights, int n, int h, int w);

  // sample: [N,H,W,Cin] NHWC; timesteps: [N]; labels: [N] or null; out: [N,H,W,Cout].
  void run(const float* sample, const float* timesteps, const int32_t* labels, float* out);

  // Called after every node with its output (compare mode, profiling, debugging).
  std::function<void(int node, const float* out, const ValueShape& shape)> on_node;

  const MemoryPlan& plan() const { return plan_; }
  const Graph& graph() const { return mf_.graph; }

 private:
  void run_node(const Node& nd, const float* sample, const float* timesteps, const int32_t* labels);
  const float* value_ptr(int v, const float* sample, const float* timesteps) const;

  const ModelFile& mf_;
  const CpuWeights& weights_;
  MemoryPlan plan_;
  std::vector<float> arena_, scratch_;
};

}  // namespace diffrt
