// The CUDA backend: a context (stream + library handles + workspaces), the model's weights on the device, and
// an executor that runs a planned graph with the *_cuda kernels, mirroring runtime/cpu_executor.cpp's node
// dispatch one for one. Any graph of a model file runs: the denoiser (mf.graph: sample, timestep, optional
// class labels and encoder_hidden_states), the VAE decoder (mf.vae.graph: sample only) or the text encoder
// (mf.text_encoder.graph: input_ids only).
//
// Dtype: the graph's own (Graph::dtype; "the model dtype" below): each component of a model file may differ.
// Memory: plan_memory() once, then plan_device_arena() re-places every value in bytes for the model dtype with
// 256-byte alignment; ONE arena allocation, one group-norm workspace, device inputs for exactly the inputs the
// graph has (sample and encoder_hidden_states in the model dtype, timesteps fp32, class labels int32). Nothing
// is allocated by run()/enqueue() after the first run of a shape (cuDNN/cuBLASLt plans and their buffers are
// created on the first run), so a warmed-up enqueue() can be captured into a CUDA graph.
// Modes: eager (enqueue everything, no sync), debug (sync + error check after every node; errors name the
// node), compare (runs the CPU executor on the same inputs, node by node, and names the first node whose
// relative L2 error exceeds a tolerance).
// Every enqueued node is an NVTX range named after the node (runtime/cuda/nvtx.h), for Nsight timelines.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "kernels/conv/conv_cuda.h"
#include "kernels/gemm/gemm_cuda.h"
#include "runtime/cpu_executor.h"  // GraphInputs
#include "runtime/cuda_plan.h"
#include "model/model_file.h"
#include "runtime/plan.h"

namespace diffrt {

// One per thread of work: owns a non-blocking stream, the cuDNN and cuBLASLt contexts. Not thread-safe.
class CudaContext {
 public:
  struct Options {
    int device = 0;
    bool allow_tf32 = false;  // off: fp32 models match the CPU reference to ~1e-6
    bool exhaustive_conv_search = true;
  };
  CudaContext();
  explicit CudaContext(const Options& opt);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  CudnnConv& conv() { return *conv_; }
  CublasLtContext& gemm() { return *gemm_; }
  const Options& options() const { return opt_; }
  int device() const { return opt_.device; }
  void synchronize();

 private:
  Options opt_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudnnConv> conv_;
  std::unique_ptr<CublasLtContext> gemm_;
};

// Every tensor of a model file uploaded once, in its stored dtype (the data section is copied as one block: its
// tensors are already 256-byte aligned). Read-only afterwards: share it among any number of executors/sessions
// on the same device. Components may differ in dtype (an fp16 UNet beside an fp32 VAE); within one graph every
// tensor must be in the graph's dtype (Graph::dtype), which the executor of that graph runs in.
class CudaWeights {
 public:
  explicit CudaWeights(const ModelFile& mf, int device = 0);
  const void* get(const std::string& name) const;  // throws naming the tensor if absent
  DType dtype() const { return dtype_; }           // the denoiser's dtype (mf.graph.dtype); see Graph::dtype
  uint64_t bytes() const { return buf_.bytes(); }
  int device() const { return device_; }

 private:
  DeviceBuffer buf_;
  std::vector<std::pair<std::string, uint64_t>> offsets_;  // sorted by name
  DType dtype_ = DType::F32;
  int device_ = 0;
};

// The per-node outcome of compare mode.
struct NodeCompare {
  int node = -1;
  std::string name, op;
  double rel_l2 = 0, max_abs = 0;
};
struct CompareReport {
  int first_bad = -1;             // index of the first node over the tolerance, -1 if none
  std::string first_bad_name;
  std::vector<NodeCompare> nodes;  // every node, in execution order
  std::string summary() const;
};

class CudaExecutor {
 public:
  // The denoiser (mf.graph) planned for batch n at h x w (throws for sizes the network cannot take); allocates
  // all device memory. Same as the next constructor with mf.graph and PlanInputs{n, h, w, 0}.
  CudaExecutor(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, int n, int h, int w);
  // Any graph of the file (mf.graph or mf.vae.graph; it must outlive the executor), planned for `in`
  // (in.context_len: tokens of encoder_hidden_states for text-conditioned graphs, else 0).
  CudaExecutor(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, const Graph& graph,
               const PlanInputs& in);

  // Device inputs the graph reads; fill them (or let the sampler write them) before enqueue(). Each is null when
  // the graph has no such input.
  void* sample() const { return sample_.get(); }               // [N,H,W,Cin] model dtype
  float* timesteps() const { return timesteps_.as<float>(); }  // [N] fp32
  int32_t* labels() const { return labels_.as<int32_t>(); }    // [N] int32 (class-conditional models)
  void* encoder_hidden_states() const { return context_.get(); }  // [N,L,context_dim] model dtype (text models)
  int32_t* input_ids() const { return ids_.as<int32_t>(); }    // [N,L] int32 (text encoders)
  int context_len() const { return plan_.context_len; }        // L (0 without a text context)
  const void* output() const;                                  // [N,H',W',Cout] model dtype, in the arena
  const void* value(int v) const;                              // any computed value (valid until reused)

  // Enqueues every node on the context's stream; no host synchronisation (unless debug). Host-side errors
  // (validation) name the node.
  void enqueue();
  // Runs node k only (compare mode, profiling). Its inputs must have been computed.
  void enqueue_node(size_t k);

  // Convenience: host fp32 inputs (NHWC sample, [N,L,D] context) -> uploaded in the model dtype -> enqueue ->
  // host fp32 output [N,H',W',Cout]; synchronises. The pointers must match the graph's inputs exactly
  // (check_graph_inputs), e.g. a VAE decoder takes the sample alone.
  void run(const GraphInputs& in, float* out);
  void run(const float* sample, const float* timesteps, const int32_t* labels, float* out);

  // Compare mode: runs the CPU reference executor on the same host inputs (rounded to the model dtype first, as
  // the GPU reads them), and after each CPU node this executor's node, and compares (relative L2 of the node
  // output against the CPU's; NaN/Inf never pass). Synchronises per node; slow.
  CompareReport compare_with_cpu(const GraphInputs& in, double tolerance);
  CompareReport compare_with_cpu(const float* sample, const float* timesteps, const int32_t* labels,
                                 double tolerance);

  // Precomputed time embeddings: when set, the time-embedding node copies row block [*step_counter] of `table`
  // ([steps, N, T] model dtype, from timestep_embedding_steps_cuda) instead of recomputing the MLP.
  void use_time_embedding_table(const void* table, const int* step_counter, int steps);
  void clear_time_embedding_table() { temb_table_ = nullptr; temb_counter_ = nullptr; }

  bool debug = false;  // sync + check after each node

  // Bytes of device memory this executor holds (arena, inputs, GroupNorm workspace): at most what
  // cuda_executor_bytes() plans for it (runtime/cuda_plan.h; the memory estimate is built from that).
  uint64_t device_bytes() const {
    return arena_.bytes() + sample_.bytes() + timesteps_.bytes() + labels_.bytes() + context_.bytes() + ids_.bytes() +
           gn_ws_.bytes();
  }
  const MemoryPlan& plan() const { return plan_; }
  const DeviceArenaPlan& arena_plan() const { return arena_plan_; }
  const Graph& graph() const { return g_; }
  DType dtype() const { return dtype_; }
  int batch() const { return plan_.n; }
  CudaContext& context() const { return ctx_; }
  const CudaWeights& weights() const { return weights_; }
  const ModelFile& model() const { return mf_; }
  // Downloads value v as fp32 (synchronises).
  std::vector<float> download(int v) const;
  // Uploads host fp32 NHWC to the sample input in the model dtype (synchronous).
  void upload_sample(const float* x);
  // Uploads host fp32 encoder_hidden_states [N, L, context_dim] in the model dtype (synchronous; text models).
  void upload_context(const float* context);
  // Checks host token ids [N, L] against the vocabulary and uploads them (synchronous; text encoders).
  void upload_input_ids(const int32_t* ids);

 private:
  void run_node(const Node& nd);
  void* vptr(int v) const;
  void upload_inputs(const GraphInputs& in);  // checks, then sample, timesteps, labels, context

  const ModelFile& mf_;
  const Graph& g_;
  const CudaWeights& weights_;
  CudaContext& ctx_;
  DType dtype_;
  MemoryPlan plan_;
  DeviceArenaPlan arena_plan_;
  DeviceBuffer arena_, sample_, timesteps_, labels_, context_, ids_, gn_ws_;
  const void* temb_table_ = nullptr;
  const int* temb_counter_ = nullptr;
  int temb_steps_ = 0;
};

}  // namespace diffrt
