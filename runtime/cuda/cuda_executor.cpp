// CUDA backend: context, device weights, executor (contracts in cuda_executor.h). The node dispatch mirrors
// runtime/cpu_executor.cpp one for one; only the pointers (device, model dtype) and the launchers differ.
// Tested by tests/gpu/executor_test.cpp (fp32 vs the CPU executor, fp16/bf16 within bounds, compare mode) and
// tests/gpu/sd_test.cpp (text-conditioned UNet, VAE decoder, cross-attention, LayerNorm, GEGLU).
#include "runtime/cuda/cuda_executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "kernels/activation/activation.h"
#include "kernels/attention/attention.h"
#include "base/error.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/layer_norm/layer_norm.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_kernels.h"
#include "runtime/cuda/nvtx.h"
#include "runtime/op_params.h"

namespace diffrt {

// ---- context -----------------------------------------------------------------------------------------------

CudaContext::CudaContext() : CudaContext(Options{}) {}

CudaContext::CudaContext(const Options& opt) : opt_(opt) {
  DIFFRT_CUDA_CHECK(cudaSetDevice(opt_.device));
  DIFFRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    CudnnConv::Options co;
    co.allow_tf32 = opt_.allow_tf32;
    co.exhaustive_search = opt_.exhaustive_conv_search;
    conv_ = std::make_unique<CudnnConv>(co);
    CublasLtContext::Options go;
    go.allow_tf32 = opt_.allow_tf32;
    gemm_ = std::make_unique<CublasLtContext>(go);
  } catch (...) {
    cudaStreamDestroy(stream_);
    throw;
  }
}

CudaContext::~CudaContext() {
  if (stream_) cudaStreamSynchronize(stream_);  // buffers below may still be in use
  gemm_.reset();
  conv_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaContext::synchronize() { DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

// ---- weights -----------------------------------------------------------------------------------------------

CudaWeights::CudaWeights(const ModelFile& mf, int device) : device_(device) {
  if (mf.tensors.empty()) fail(ErrorCode::InvalidModel, "model file has no tensors");
  // Mixed precision per component: each graph reads its tensors in its own dtype (Graph::dtype); the kernels take
  // one dtype per node, so a tensor stored in another dtype than its graph's cannot run here. Format version 2
  // files are checked for this when read; a version 1 file with mixed dtypes inside one graph is refused here.
  for (const auto& [path, g] : model_graphs(mf))
    for (const Node& n : g->nodes)
      for (const auto& [role, name] : n.weights) {
        const TensorInfo* t = mf.find(name);
        if (t && t->dtype != g->dtype)
          fail(ErrorCode::Unsupported, "CUDA backend: tensor '" + name + "' is " + dtype_name(t->dtype) + " but " +
                                           path + " runs in " + dtype_name(g->dtype) +
                                           " (mixed dtypes inside one graph; re-convert the model)");
      }
  dtype_ = mf.graph.dtype;
  for (const TensorInfo& t : mf.tensors) {
    if (t.offset % kDeviceAlignBytes != 0)
      fail(ErrorCode::InvalidModel, "tensor '" + t.name + "' is not 256-byte aligned in the data section");
    offsets_.emplace_back(t.name, t.offset);
  }
  std::sort(offsets_.begin(), offsets_.end());
  DIFFRT_CUDA_CHECK(cudaSetDevice(device_));
  buf_.allocate(mf.data.size());
  if (!mf.data.empty()) {
    // On a stream of our own, waited for: a plain cudaMemcpy from pageable memory may return before its DMA has
    // landed, and kernels on the contexts' non-blocking streams are not ordered after the legacy stream.
    cudaStream_t s = nullptr;
    DIFFRT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaError_t e = cudaMemcpyAsync(buf_.get(), mf.data.data(), mf.data.size(), cudaMemcpyHostToDevice, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
    DIFFRT_CUDA_CHECK(e);
  }
}

const void* CudaWeights::get(const std::string& name) const {
  auto it = std::lower_bound(offsets_.begin(), offsets_.end(), name,
                             [](const std::pair<std::string, uint64_t>& a, const std::string& b) { return a.first < b; });
  if (it == offsets_.end() || it->first != name) fail(ErrorCode::InvalidModel, "model file has no tensor '" + name + "'");
  return static_cast<const char*>(buf_.get()) + it->second;
}

// ---- compare report ----------------------------------------------------------------------------------------

std::string CompareReport::summary() const {
  std::ostringstream s;
  if (first_bad < 0) {
    s << "all " << nodes.size() << " nodes within tolerance";
  } else {
    const NodeCompare& b = nodes[size_t(first_bad)];
    s << "first diverging node #" << b.node << " '" << b.name << "' (" << b.op << "): rel_l2 " << b.rel_l2
      << ", max_abs " << b.max_abs;
  }
  return s.str();
}

// ---- executor ----------------------------------------------------------------------------------------------

CudaExecutor::CudaExecutor(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, int n, int h, int w)
    : CudaExecutor(mf, weights, ctx, mf.graph, PlanInputs{n, h, w, 0}) {}

CudaExecutor::CudaExecutor(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, const Graph& graph,
                           const PlanInputs& in)
    : mf_(mf), g_(graph), weights_(weights), ctx_(ctx), dtype_(graph.dtype), plan_(plan_memory(graph, in)) {
  if (weights.device() != ctx.device())
    fail(ErrorCode::InvalidArgument, "CUDA executor: weights live on device " + std::to_string(weights.device()) +
                                         ", the context on device " + std::to_string(ctx.device()));
  const Graph& g = g_;
  const size_t n = size_t(plan_.n);
  arena_plan_ = plan_device_arena(g, plan_, dtype_);
  DIFFRT_CUDA_CHECK(cudaSetDevice(ctx.device()));
  arena_.allocate(std::max<uint64_t>(arena_plan_.bytes, kDeviceAlignBytes));
  if (g.sample >= 0) sample_.allocate(plan_.shapes[size_t(g.sample)].numel() * dtype_size(dtype_));
  if (g.input_ids >= 0) {
    ids_.allocate(plan_.shapes[size_t(g.input_ids)].numel() * sizeof(int32_t));
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(ids_.get(), 0, ids_.bytes(), ctx.stream()));  // id 0 until uploaded
  }
  if (g.timestep >= 0) timesteps_.allocate(n * sizeof(float));
  if (g.class_labels >= 0) {
    labels_.allocate(n * sizeof(int32_t));
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(labels_.get(), 0, labels_.bytes(), ctx.stream()));  // ordered with the stream
  }
  if (g.context >= 0) {
    context_.allocate(plan_.shapes[size_t(g.context)].numel() * dtype_size(dtype_));
    // Defined contents before the first upload (a forgotten upload gives zeros, not garbage).
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(context_.get(), 0, context_.bytes(), ctx.stream()));
  }
  const uint64_t gn = group_norm_workspace_for(g, plan_);
  if (gn) gn_ws_.allocate(gn);
}

void* CudaExecutor::vptr(int v) const {
  const Graph& g = g_;
  if (v == g.sample) return sample_.get();
  if (v == g.timestep) return timesteps_.get();
  if (v == g.class_labels) return labels_.get();
  if (v == g.context) return context_.get();
  if (v == g.input_ids) return ids_.get();
  const int64_t off = arena_plan_.byte_offset[size_t(v)];
  if (off < 0) fail(ErrorCode::Internal, "value '" + g.values[size_t(v)] + "' has no arena slot");
  return static_cast<char*>(arena_.get()) + off;
}

const void* CudaExecutor::output() const { return vptr(g_.output); }
const void* CudaExecutor::value(int v) const { return vptr(v); }

void CudaExecutor::use_time_embedding_table(const void* table, const int* step_counter, int steps) {
  if (!table || !step_counter || steps < 1) fail(ErrorCode::InvalidArgument, "time embedding table: null or no steps");
  temb_table_ = table;
  temb_counter_ = step_counter;
  temb_steps_ = steps;
}

void CudaExecutor::enqueue_node(size_t k) {
  const Node& nd = g_.nodes.at(k);
  nvtx::Range range{nd.name.c_str()};  // Nsight timelines name every node (runtime/cuda/nvtx.h)
  try {
    run_node(nd);
    if (debug) {
      DIFFRT_CUDA_CHECK(cudaGetLastError());
      DIFFRT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    }
  } catch (const Error& e) {
    throw Error(e.code(), "node #" + std::to_string(k) + " '" + nd.name + "' (" + op_name(nd.attrs) + "): " + e.what());
  }
}

void CudaExecutor::enqueue() {
  for (size_t k = 0; k < g_.nodes.size(); ++k) enqueue_node(k);
}

namespace {

const void* cuda_tensor(const void* weights, const std::string& name) {
  return static_cast<const CudaWeights*>(weights)->get(name);
}

// The CUDA launch of each op's params: the hand-written kernels, cuDNN for convolutions, cuBLASLt for linears.
struct CudaLaunch {
  CudaContext& ctx;
  DeviceBuffer& gn_ws;
  cudaStream_t st;
  void operator()(const TimestepEmbeddingParams& p) const { timestep_embedding_cuda(p, st); }
  void operator()(const Conv2dParams& p) const { conv2d_cuda(p, ctx.conv(), st); }
  void operator()(const LinearParams& p) const { linear_cuda(p, ctx.gemm(), st); }
  void operator()(GroupNormParams p) const {
    p.workspace = gn_ws.get();
    p.workspace_bytes = gn_ws.bytes();
    group_norm_cuda(p, st);
  }
  void operator()(const AttentionParams& p) const { attention_cuda(p, st); }
  void operator()(const ConcatParams& p) const { concat_cuda(p, st); }
  void operator()(const Upsample2xParams& p) const { upsample2x_cuda(p, st); }
  void operator()(const AffineParams& p) const { affine_cuda(p, st); }
  void operator()(const LayerNormParams& p) const { layer_norm_cuda(p, st); }
  void operator()(const GegluParams& p) const { geglu_cuda(p, st); }
  void operator()(const EmbeddingParams& p) const { embedding_cuda(p, st); }
  void operator()(const ActivationParams& p) const { activation_cuda(p, st); }
  void operator()(const PatchEmbedParams& p) const { patch_embed_cuda(p, st); }
  void operator()(const UnpatchifyParams& p) const { unpatchify_cuda(p, st); }
};

}  // namespace

void CudaExecutor::run_node(const Node& nd) {
  const cudaStream_t st = ctx_.stream();
  if (temb_table_ && std::holds_alternative<TimeEmbeddingAttrs>(nd.attrs)) {
    // The sampler precomputed every step's time embedding: copy this step's slice.
    const ValueShape& ys = plan_.shapes[size_t(nd.output)];
    cuda_rt::copy_step_slice(temb_table_, temb_counter_, size_t(ys.numel()) * dtype_size(dtype_), vptr(nd.output), st);
    return;
  }
  if (std::holds_alternative<TimeEmbeddingAttrs>(nd.attrs) && g_.timestep < 0)
    fail(ErrorCode::InvalidModel, "time embedding in a graph without a timestep input");
  const NodeBinding b = bind_node(nd, plan_, dtype_, [&](int v) { return vptr(v); }, cuda_tensor, &weights_);
  std::visit(CudaLaunch{ctx_, gn_ws_, st}, node_params(b));
}

std::vector<float> CudaExecutor::download(int v) const {
  if (v == g_.class_labels || v == g_.input_ids)
    fail(ErrorCode::InvalidArgument, "download: class labels and token ids are int32, not float values");
  const uint64_t count = plan_.shapes[size_t(v)].numel();
  const DType t = v == g_.timestep ? DType::F32 : dtype_;
  std::vector<uint8_t> raw(count * dtype_size(t));
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(raw.data(), vptr(v), raw.size(), cudaMemcpyDeviceToHost, ctx_.stream()));
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  std::vector<float> out(count);
  to_f32(t, raw.data(), out.data(), count);
  return out;
}

namespace {

// Host -> device on the executor's stream, then waits: ordered after every kernel enqueued before (none still
// reads dst) and complete on return (a plain cudaMemcpy from pageable memory may return before its DMA lands,
// and it is not ordered with a non-blocking stream).
void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// Host fp32 -> device in `dtype` (synchronous, as copy_to_device).
void upload_as(DType dtype, const float* x, uint64_t count, void* dst, cudaStream_t stream) {
  std::vector<uint8_t> raw(count * dtype_size(dtype));
  from_f32(dtype, x, raw.data(), count);
  copy_to_device(dst, raw.data(), raw.size(), stream);
}

// x rounded to what `dtype` stores (compare mode: both backends must see the same inputs).
std::vector<float> rounded_to(DType dtype, const float* x, uint64_t count) {
  std::vector<float> v(x, x + count);
  if (dtype != DType::F32) {
    std::vector<uint8_t> raw(count * dtype_size(dtype));
    from_f32(dtype, v.data(), raw.data(), count);
    to_f32(dtype, raw.data(), v.data(), count);
  }
  return v;
}

}  // namespace

void CudaExecutor::upload_sample(const float* x) {
  if (g_.sample < 0) fail(ErrorCode::InvalidArgument, "this network takes no sample");
  upload_as(dtype_, x, plan_.shapes[size_t(g_.sample)].numel(), sample_.get(), ctx_.stream());
}

void CudaExecutor::upload_input_ids(const int32_t* ids) {
  check_input_ids(g_, plan_.n, plan_.seq_len, ids);  // the kernel cannot report a bad id; refuse it here
  copy_to_device(ids_.get(), ids, ids_.bytes(), ctx_.stream());
}

void CudaExecutor::upload_context(const float* context) {
  if (g_.context < 0) fail(ErrorCode::InvalidArgument, "this network takes no encoder_hidden_states");
  if (!context) fail(ErrorCode::InvalidArgument, "encoder_hidden_states: null");
  upload_as(dtype_, context, plan_.shapes[size_t(g_.context)].numel(), context_.get(), ctx_.stream());
}

void CudaExecutor::upload_inputs(const GraphInputs& in) {
  check_graph_inputs(g_, mf_.conditioning.num_classes, plan_.n, in.sample, in.timesteps, in.labels, in.context,
                     in.input_ids);
  if (in.sample) upload_sample(in.sample);
  if (in.input_ids) upload_input_ids(in.input_ids);
  if (in.timesteps) copy_to_device(timesteps_.get(), in.timesteps, size_t(plan_.n) * sizeof(float), ctx_.stream());
  if (in.labels) copy_to_device(labels_.get(), in.labels, size_t(plan_.n) * sizeof(int32_t), ctx_.stream());
  if (in.context) upload_context(in.context);
}

void CudaExecutor::run(const GraphInputs& in, float* out) {
  upload_inputs(in);
  enqueue();
  std::vector<float> o = download(g_.output);
  std::memcpy(out, o.data(), o.size() * sizeof(float));
}

void CudaExecutor::run(const float* sample, const float* timesteps, const int32_t* labels, float* out) {
  GraphInputs in;
  in.sample = sample; in.timesteps = timesteps; in.labels = labels;
  run(in, out);
}

CompareReport CudaExecutor::compare_with_cpu(const float* sample, const float* timesteps, const int32_t* labels,
                                             double tolerance) {
  GraphInputs in;
  in.sample = sample; in.timesteps = timesteps; in.labels = labels;
  return compare_with_cpu(in, tolerance);
}

CompareReport CudaExecutor::compare_with_cpu(const GraphInputs& host, double tolerance) {
  const Graph& g = g_;
  check_graph_inputs(g, mf_.conditioning.num_classes, plan_.n, host.sample, host.timesteps, host.labels, host.context,
                     host.input_ids);
  // Both backends see the same inputs: sample and context rounded to the model dtype (what the GPU reads).
  std::vector<float> x, c;
  if (host.sample) x = rounded_to(dtype_, host.sample, plan_.shapes[size_t(g.sample)].numel());
  if (host.context) c = rounded_to(dtype_, host.context, plan_.shapes[size_t(g.context)].numel());
  GraphInputs in = host;
  in.sample = host.sample ? x.data() : nullptr;
  in.context = host.context ? c.data() : nullptr;
  upload_inputs(in);

  CpuWeights cw(mf_);
  CpuExecutor cpu(mf_, cw, g, PlanInputs{plan_.n, plan_.h, plan_.w, plan_.context_len, plan_.seq_len});
  CompareReport rep;
  cpu.on_node = [&](int k, const float* ref, const ValueShape& s) {
    enqueue_node(size_t(k));
    std::vector<float> got = download(g.nodes[size_t(k)].output);
    double num = 0, den = 0, mx = 0;
    bool finite = true;
    for (uint64_t i = 0; i < s.numel(); ++i) {
      if (!std::isfinite(got[i])) finite = false;
      const double d = double(got[i]) - double(ref[i]);
      num += d * d;
      den += double(ref[i]) * double(ref[i]);
      mx = std::max(mx, std::fabs(d));
    }
    NodeCompare nc;
    nc.node = k;
    nc.name = g.nodes[size_t(k)].name;
    nc.op = op_name(g.nodes[size_t(k)].attrs);
    nc.rel_l2 = finite ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
    nc.max_abs = finite ? mx : INFINITY;
    if (rep.first_bad < 0 && !(nc.rel_l2 <= tolerance)) {
      rep.first_bad = k;
      rep.first_bad_name = nc.name;
    }
    rep.nodes.push_back(std::move(nc));
  };
  std::vector<float> out(plan_.shapes[size_t(g.output)].numel());
  cpu.run(in, out.data());
  return rep;
}

}  // namespace diffrt
