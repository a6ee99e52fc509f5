// The CPU reference backend: runs a planned graph with the *_ref kernels in fp32 (weights of any
// stored dtype are widened once at load). Slow but exact; also the reference of compare mode.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/model_file.h"
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

// The inputs of one run; pointers the graph does not take must be null.
struct GraphInputs {
  const float* sample = nullptr;     // [N,H,W,Cin] NHWC
  const float* timesteps = nullptr;  // [N]
  const int32_t* labels = nullptr;   // [N]
  const float* context = nullptr;    // encoder_hidden_states [N, L, context_dim]
  const int32_t* input_ids = nullptr;  // token ids [N, L] (text encoders; then sample is null)
};

class CpuExecutor {
 public:
  // The denoiser (mf.graph), planned for batch n at h x w; throws for sizes it cannot take.
  CpuExecutor(const ModelFile& mf, const CpuWeights& weights, int n, int h, int w);
  // Any graph of the file (mf.graph, mf.vae.graph or mf.text_encoder.graph); `in.context_len` for
  // text-conditioned UNets, `in.seq_len` (tokens) for text encoders.
  CpuExecutor(const ModelFile& mf, const CpuWeights& weights, const Graph& graph, const PlanInputs& in);

  // sample: [N,H,W,Cin] NHWC; timesteps: [N]; labels: [N] or null; out: [N,H,W,Cout].
  void run(const float* sample, const float* timesteps, const int32_t* labels, float* out);
  // out: the graph output, plan().shapes[graph().output].
  void run(const GraphInputs& in, float* out);

  // Called after every node with its output (compare mode, profiling, debugging).
  std::function<void(int node, const float* out, const ValueShape& shape)> on_node;

  const MemoryPlan& plan() const { return plan_; }
  const Graph& graph() const { return g_; }

 private:
  void run_node(const Node& nd, const GraphInputs& in);
  const float* value_ptr(int v, const GraphInputs& in) const;

  const ModelFile& mf_;
  const Graph& g_;
  const CpuWeights& weights_;
  MemoryPlan plan_;
  std::vector<float> arena_, scratch_;
};

}  // namespace diffrt
