// CUDA backend: context, device weights, executor (contracts in cuda_executor.h). The node dispatch mirrors
// runtime/cpu_executor.cpp one for one; only the pointers (device, model dtype) and the launchers differ.
// Tested by tests/gpu/executor_test.cpp (fp32 vs the CPU executor, fp16/bf16 within bounds, compare mode).
#include "runtime/cuda/cuda_executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "kernels/attention/attention.h"
#include "kernels/common/error.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/group_norm/group_norm.h"
#include "kernels/timestep_embedding/timestep_embedding.h"
#include "runtime/cpu_executor.h"
#include "runtime/cuda/cuda_kernels.h"

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
  dtype_ = mf.tensors.front().dtype;
  for (const TensorInfo& t : mf.tensors) {
    if (t.dtype != dtype_)
      fail(ErrorCode::Unsupported, "CUDA backend: tensor '" + t.name + "' is " + dtype_name(t.dtype) +
                                       " but the model is " + dtype_name(dtype_) + " (mixed dtypes)");
    if (t.offset % kDeviceAlignBytes != 0)
      fail(ErrorCode::InvalidModel, "tensor '" + t.name + "' is not 256-byte aligned in the data section");
    offsets_.emplace_back(t.name, t.offset);
  }
  std::sort(offsets_.begin(), offsets_.end());
  DIFFRT_CUDA_CHECK(cudaSetDevice(device_));
  buf_.allocate(mf.data.size());
  if (!mf.data.empty()) DIFFRT_CUDA_CHECK(cudaMemcpy(buf_.get(), mf.data.data(), mf.data.size(), cudaMemcpyHostToDevice));
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
    : mf_(mf), weights_(weights), ctx_(ctx), dtype_(weights.dtype()), plan_(plan_memory(mf.graph, n, h, w)) {
  if (weights.device() != ctx.device())
    fail(ErrorCode::InvalidArgument, "CUDA executor: weights live on device " + std::to_string(weights.device()) +
                                         ", the context on device " + std::to_string(ctx.device()));
  const Graph& g = mf_.graph;
  arena_plan_ = plan_device_arena(g, plan_, dtype_);
  DIFFRT_CUDA_CHECK(cudaSetDevice(ctx.device()));
  arena_.allocate(std::max<uint64_t>(arena_plan_.bytes, kDeviceAlignBytes));
  sample_.allocate(plan_.shapes[size_t(g.sample)].numel() * dtype_size(dtype_));
  timesteps_.allocate(size_t(n) * sizeof(float));
  labels_.allocate(size_t(n) * sizeof(int32_t));
  DIFFRT_CUDA_CHECK(cudaMemsetAsync(labels_.get(), 0, labels_.bytes(), ctx.stream()));  // ordered with the stream
  const uint64_t gn = group_norm_workspace_for(g, plan_);
  if (gn) gn_ws_.allocate(gn);
}

void* CudaExecutor::vptr(int v) const {
  const Graph& g = mf_.graph;
  if (v == g.sample) return sample_.get();
  if (v == g.timestep) return timesteps_.get();
  if (v == g.class_labels) return labels_.get();
  const int64_t off = arena_plan_.byte_offset[size_t(v)];
  if (off < 0) fail(ErrorCode::Internal, "value '" + g.values[size_t(v)] + "' has no arena slot");
  return static_cast<char*>(arena_.get()) + off;
}

const void* CudaExecutor::output() const { return vptr(mf_.graph.output); }
const void* CudaExecutor::value(int v) const { return vptr(v); }

void CudaExecutor::use_time_embedding_table(const void* table, const int* step_counter, int steps) {
  if (!table || !step_counter || steps < 1) fail(ErrorCode::InvalidArgument, "time embedding table: null or no steps");
  temb_table_ = table;
  temb_counter_ = step_counter;
  temb_steps_ = steps;
}

void CudaExecutor::enqueue_node(size_t k) {
  const Node& nd = mf_.graph.nodes.at(k);
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
  for (size_t k = 0; k < mf_.graph.nodes.size(); ++k) enqueue_node(k);
}

void CudaExecutor::run_node(const Node& nd) {
  const cudaStream_t st = ctx_.stream();
  const size_t es = dtype_size(dtype_);
  auto in = [&](size_t i) { return vptr(nd.inputs[i]); };
  auto shape = [&](size_t i) -> const ValueShape& { return plan_.shapes[size_t(nd.inputs[i])]; };
  auto wt = [&](const char* role) -> const void* {
    auto it = nd.weights.find(role);
    return it == nd.weights.end() ? nullptr : weights_.get(it->second);
  };
  void* y = vptr(nd.output);
  const ValueShape& ys = plan_.shapes[size_t(nd.output)];

  std::visit([&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    if constexpr (std::is_same_v<A, TimeEmbeddingAttrs>) {
      if (temb_table_) {
        cuda_rt::copy_step_slice(temb_table_, temb_counter_, size_t(ys.numel()) * es, y, st);
        return;
      }
      TimestepEmbeddingParams p;
      p.timesteps = static_cast<const float*>(vptr(mf_.graph.timestep));
      p.class_labels = nd.inputs.size() > 1 ? static_cast<const int32_t*>(in(1)) : nullptr;
      p.w1 = wt("w1"); p.b1 = wt("b1"); p.w2 = wt("w2"); p.b2 = wt("b2");
      p.class_table = wt("class_table");
      p.out = y;
      p.n = int(ys.n); p.dim = a.dim; p.out_dim = a.out_dim; p.num_classes = a.num_classes;
      p.flip = a.flip; p.freq_shift = a.freq_shift;
      p.dtype = dtype_;
      timestep_embedding_cuda(p, st);
    } else if constexpr (std::is_same_v<A, Conv2dAttrs>) {
      Conv2dParams p;
      p.x = in(0); p.w = wt("weight"); p.bias = wt("bias");
      p.residual = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.y = y;
      p.n = int(ys.n); p.h = int(shape(0).h); p.w_in = int(shape(0).w); p.cin = a.cin; p.cout = a.cout;
      p.kh = a.kh; p.kw = a.kw; p.stride = a.stride;
      p.pad_top = a.pad_top; p.pad_left = a.pad_left; p.pad_bottom = a.pad_bottom; p.pad_right = a.pad_right;
      p.out_scale = a.out_scale;
      p.dtype = dtype_;
      conv2d_cuda(p, ctx_.conv(), st);
    } else if constexpr (std::is_same_v<A, LinearAttrs>) {
      LinearParams p;
      p.x = in(0); p.w = wt("weight"); p.bias = wt("bias");
      p.residual = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.y = y;
      p.m = int(ys.numel() / uint64_t(ys.c)); p.n = a.out; p.k = a.in;
      p.silu_input = a.silu_input; p.out_scale = a.out_scale;
      p.dtype = dtype_;
      linear_cuda(p, ctx_.gemm(), st);
    } else if constexpr (std::is_same_v<A, GroupNormAttrs>) {
      GroupNormParams p;
      p.x = in(0); p.y = y; p.gamma = wt("weight"); p.beta = wt("bias");
      p.emb = nd.inputs.size() > 1 ? in(1) : nullptr;
      p.emb_mode = a.emb_mode;
      p.n = int(ys.n); p.hw = int(ys.h * ys.w); p.c = int(ys.c); p.groups = a.groups;
      p.eps = a.eps; p.silu = a.silu;
      p.dtype = dtype_;
      p.workspace = gn_ws_.get();
      p.workspace_bytes = gn_ws_.bytes();
      group_norm_cuda(p, st);
    } else if constexpr (std::is_same_v<A, AttentionAttrs>) {
      const char* qkv = static_cast<const char*>(in(0));
      const int C = a.heads * a.head_dim;
      AttentionParams p;
      p.q = qkv; p.k = qkv + size_t(C) * es; p.v = qkv + size_t(2 * C) * es; p.o = y;
      p.batch = int(ys.n); p.heads = a.heads; p.lq = p.lkv = int(ys.h * ys.w); p.head_dim = a.head_dim;
      p.ldq = p.ldk = p.ldv = 3 * C; p.ldo = C;
      p.scale = a.scale;
      p.dtype = dtype_;
      attention_cuda(p, st);
    } else if constexpr (std::is_same_v<A, ConcatAttrs>) {
      ConcatParams p;
      p.a = in(0); p.b = in(1); p.y = y;
      p.pixels = (long long)(ys.n * ys.h * ys.w); p.ca = int(shape(0).c); p.cb = int(shape(1).c);
      p.dtype = dtype_;
      concat_cuda(p, st);
    } else if constexpr (std::is_same_v<A, Upsample2xAttrs>) {
      Upsample2xParams p;
      p.x = in(0); p.y = y;
      p.n = int(ys.n); p.h = int(shape(0).h); p.w = int(shape(0).w); p.c = int(ys.c);
      p.dtype = dtype_;
      upsample2x_cuda(p, st);
    } else {
      static_assert(std::is_same_v<A, AffineAttrs>);
      AffineParams p;
      p.x = in(0); p.y = y; p.count = (long long)ys.numel(); p.scale = a.scale; p.shift = a.shift;
      p.dtype = dtype_;
      affine_cuda(p, st);
    }
  }, nd.attrs);
}

std::vector<float> CudaExecutor::download(int v) const {
  const uint64_t count = plan_.shapes[size_t(v)].numel();
  const bool is_input_f32 = v == mf_.graph.timestep;
  const DType t = is_input_f32 ? DType::F32 : dtype_;
  std::vector<uint8_t> raw(count * dtype_size(t));
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  DIFFRT_CUDA_CHECK(cudaMemcpy(raw.data(), vptr(v), raw.size(), cudaMemcpyDeviceToHost));
  std::vector<float> out(count);
  to_f32(t, raw.data(), out.data(), count);
  return out;
}

void CudaExecutor::upload_sample(const float* x) {
  const uint64_t count = plan_.shapes[size_t(mf_.graph.sample)].numel();
  std::vector<uint8_t> raw(count * dtype_size(dtype_));
  from_f32(dtype_, x, raw.data(), count);
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  DIFFRT_CUDA_CHECK(cudaMemcpy(sample_.get(), raw.data(), raw.size(), cudaMemcpyHostToDevice));
}

namespace {

void check_labels(const ModelFile& mf, int n, const int32_t* labels) {
  if (mf.graph.class_labels >= 0) {
    if (!labels) fail(ErrorCode::InvalidArgument, "this model is class-conditional: class labels are required");
    for (int i = 0; i < n; ++i)
      if (labels[i] < 0 || labels[i] >= mf.conditioning.num_classes)
        fail(ErrorCode::InvalidArgument, "class label " + std::to_string(labels[i]) + " out of range [0, " +
                                             std::to_string(mf.conditioning.num_classes - 1) + "]");
  } else if (labels) {
    fail(ErrorCode::InvalidArgument, "this model is not class-conditional: class labels are not accepted");
  }
}

}  // namespace

void CudaExecutor::run(const float* sample, const float* timesteps, const int32_t* labels, float* out) {
  check_labels(mf_, plan_.n, labels);
  upload_sample(sample);
  DIFFRT_CUDA_CHECK(cudaMemcpy(timesteps_.get(), timesteps, size_t(plan_.n) * sizeof(float), cudaMemcpyHostToDevice));
  if (labels)
    DIFFRT_CUDA_CHECK(cudaMemcpy(labels_.get(), labels, size_t(plan_.n) * sizeof(int32_t), cudaMemcpyHostToDevice));
  enqueue();
  std::vector<float> o = download(mf_.graph.output);
  std::memcpy(out, o.data(), o.size() * sizeof(float));
}

CompareReport CudaExecutor::compare_with_cpu(const float* sample, const float* timesteps, const int32_t* labels,
                                             double tolerance) {
  const Graph& g = mf_.graph;
  check_labels(mf_, plan_.n, labels);
  // Both backends see the same inputs: the sample rounded to the model dtype (what the GPU reads).
  const uint64_t count = plan_.shapes[size_t(g.sample)].numel();
  std::vector<float> x(sample, sample + count);
  if (dtype_ != DType::F32) {
    std::vector<uint8_t> raw(count * 2);
    from_f32(dtype_, x.data(), raw.data(), count);
    to_f32(dtype_, raw.data(), x.data(), count);
  }
  upload_sample(x.data());
  DIFFRT_CUDA_CHECK(cudaMemcpy(timesteps_.get(), timesteps, size_t(plan_.n) * sizeof(float), cudaMemcpyHostToDevice));
  if (labels)
    DIFFRT_CUDA_CHECK(cudaMemcpy(labels_.get(), labels, size_t(plan_.n) * sizeof(int32_t), cudaMemcpyHostToDevice));

  CpuWeights cw(mf_);
  CpuExecutor cpu(mf_, cw, plan_.n, plan_.h, plan_.w);
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
  cpu.run(x.data(), timesteps, labels, out.data());
  return rep;
}

}  // namespace diffrt
