// diffrt bench / profile on the CUDA backend (contracts in cuda_bench.h). Host code only.
#include "runtime/cuda/cuda_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "base/error.h"
#include "runtime/cuda/cuda_sampler.h"
#include "runtime/cuda/gpu_spin.h"
#include "runtime/cuda/nvtx.h"

namespace diffrt {

namespace {

struct EventSet {
  std::vector<cudaEvent_t> ev;
  explicit EventSet(size_t n) : ev(n, nullptr) {
    for (auto& e : ev) DIFFRT_CUDA_CHECK(cudaEventCreate(&e));
  }
  ~EventSet() {
    for (cudaEvent_t e : ev)
      if (e) cudaEventDestroy(e);
  }
  EventSet(const EventSet&) = delete;
  EventSet& operator=(const EventSet&) = delete;
  double ms(size_t a, size_t b) const {
    float t = 0;
    DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&t, ev[a], ev[b]));
    return double(t);
  }
};

struct GraphExec {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~GraphExec() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

// `warmup` untimed calls, then `repeat` calls back to back with an event after each: sample i = end of call i-1
// (or the start) to the end of call i.
std::vector<double> time_back_to_back(cudaStream_t s, int warmup, int repeat, const std::function<void()>& call) {
  for (int i = 0; i < warmup; ++i) call();
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  EventSet ev(size_t(repeat) + 1);
  DIFFRT_CUDA_CHECK(cudaEventRecord(ev.ev[0], s));
  for (int i = 0; i < repeat; ++i) {
    call();
    DIFFRT_CUDA_CHECK(cudaEventRecord(ev.ev[size_t(i) + 1], s));
  }
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) ms.push_back(ev.ms(size_t(i), size_t(i) + 1));
  return ms;
}

// Captures ex.enqueue() into a graph; "" on success, else why not.
std::string capture(CudaExecutor& ex, GraphExec& ge) {
  const cudaStream_t s = ex.context().stream();
  cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e);
  }
  std::string why;
  try {
    ex.enqueue();
  } catch (const std::exception& x) {
    why = std::string("capture: ") + x.what();
  }
  cudaError_t e2 = cudaStreamEndCapture(s, &ge.graph);
  if (why.empty() && e2 != cudaSuccess) why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e2);
  if (why.empty()) {
    cudaError_t e3 = cudaGraphInstantiate(&ge.exec, ge.graph, 0);
    if (e3 != cudaSuccess) {
      ge.exec = nullptr;
      why = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e3);
    }
  }
  if (!why.empty()) (void)cudaGetLastError();
  return why;
}

ProfiledGraph profile_graph(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, const Graph& g,
                            const PlanInputs& pin, const GraphInputs& in, int warmup, int repeats,
                            const std::string& label, const TensorBytes& tb) {
  using Clock = std::chrono::steady_clock;
  CudaExecutor ex(mf, weights, ctx, g, pin);
  const cudaStream_t s = ctx.stream();
  ProfiledGraph pg;
  pg.label = label;
  pg.graph = &g;
  pg.plan = ex.plan();
  pg.cost = graph_cost(g, pg.plan, dtype_size(ex.dtype()), &tb).nodes;
  pg.repetitions = repeats;
  const size_t n = g.nodes.size();

  std::vector<float> out(ex.plan().shapes[size_t(g.output)].numel());
  ex.run(in, out.data());  // uploads the inputs; first run: plans, algorithm search
  for (int i = 1; i < warmup; ++i) ex.enqueue();
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));

  // Calibration: how long the host takes to enqueue each chunk.
  constexpr size_t kChunk = 128;
  std::vector<double> host_ms;
  for (size_t c0 = 0; c0 < n; c0 += kChunk) {
    const auto t0 = Clock::now();
    for (size_t k = c0; k < std::min(n, c0 + kChunk); ++k) ex.enqueue_node(k);
    host_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  const double max_host_ms = host_ms.empty() ? 0.0 : *std::max_element(host_ms.begin(), host_ms.end());
  // Twice the slowest chunk, plus 1 ms for the event records the timed runs add (~128 x a few us).
  const uint64_t spin_ns = uint64_t(std::min(200.0, 2.0 * max_host_ms + 1.0) * 1e6);

  // Timed runs: per chunk [spin][start event][node, event]...
  const size_t chunks = (n + kChunk - 1) / kChunk;
  EventSet ev(n + chunks);  // node k's end event: k + chunk index + 1; chunk c's start event: c0 + c
  std::vector<std::vector<double>> samples(n);
  for (int r = 0; r < repeats; ++r) {
    nvtx::Range range{"profile pass"};
    for (size_t c = 0, c0 = 0; c0 < n; ++c, c0 += kChunk) {
      cuda_rt::gpu_spin(spin_ns, s);
      DIFFRT_CUDA_CHECK(cudaEventRecord(ev.ev[c0 + c], s));
      for (size_t k = c0; k < std::min(n, c0 + kChunk); ++k) {
        ex.enqueue_node(k);
        DIFFRT_CUDA_CHECK(cudaEventRecord(ev.ev[k + c + 1], s));
      }
    }
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
    for (size_t k = 0; k < n; ++k) {
      const size_t c = k / kChunk;
      samples[k].push_back(ev.ms(k + c, k + c + 1) * 1e3);  // start of node k = end of k-1 or the chunk start
    }
  }
  pg.node_us.resize(n);
  for (size_t k = 0; k < n; ++k) pg.node_us[k] = percentile(samples[k], 0.5);
  return pg;
}

}  // namespace

uint64_t device_used_bytes() {
  size_t free_b = 0, total_b = 0;
  DIFFRT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return uint64_t(total_b - free_b);
}

BenchResults bench_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, const Workload& w,
                        const BenchOptions& o, uint64_t baseline_used) {
  if (o.warmup < 0 || o.repeat < 1) fail(ErrorCode::InvalidArgument, "bench: --warmup must be >= 0 and --repeat >= 1");
  BenchResults res;
  res.device = "cuda";
  res.weights_bytes = weights.bytes();
  const cudaStream_t s = ctx.stream();
  uint64_t peak = device_used_bytes();
  CudaTextContext text;
  if (w.text_model) {
    text.data = w.context.data();
    text.len = w.context_len;
  }

  // Whole steps through the sampler: graph replay, then eager.
  const int steps = w.req.steps;
  const int runs = (o.warmup + o.repeat + steps - 1) / steps;
  auto sampler_steps = [&](bool graph, std::vector<double>& step_ms, std::vector<double>* run_ms) {
    std::vector<double> all;
    for (int run = 0; run < runs; ++run) {
      nvtx::Range range{graph ? "bench: sampler run (graph)" : "bench: sampler run (eager)"};
      CudaSamplerOptions so;
      so.use_cuda_graph = graph;
      CudaStepTiming t;
      so.timing = &t;
      CudaSamplerStats st;
      run_sampler_cuda(mf, weights, ctx, w.sched, w.req, ProgressFn{}, so, &st, text);
      all.insert(all.end(), t.step_ms.begin(), t.step_ms.end());
      if (run_ms) run_ms->push_back(double(t.loop_ms));
      peak = std::max(peak, t.device_used_bytes);
      if (graph) {
        res.graph_used = st.graph_used;
        res.graph_fallback = st.graph_fallback;
        res.time_embeddings_precomputed = st.time_embeddings_precomputed;
        res.unet_arena_bytes = st.arena_bytes;
      }
    }
    const size_t drop = std::min(all.size(), size_t(o.warmup));
    step_ms.assign(all.begin() + long(drop), all.end());
    if (step_ms.size() > size_t(o.repeat)) step_ms.resize(size_t(o.repeat));
  };
  sampler_steps(true, res.step_ms, &res.run_ms);
  res.sampler_runs = runs;
  if (!res.graph_used) res.notes.push_back("the sampler ran eagerly: " + res.graph_fallback);
  if (o.eager) sampler_steps(false, res.step_eager_ms, nullptr);

  if (o.unet) {
    nvtx::Range range{"bench: unet"};
    CudaExecutor ex(mf, weights, ctx, mf.graph, w.unet_in);
    res.unet_arena_bytes = ex.arena_plan().bytes;
    std::vector<float> out(ex.plan().shapes[size_t(mf.graph.output)].numel());
    ex.run(w.unet_inputs(), out.data());  // uploads the inputs, creates the plans
    res.unet_ms = time_back_to_back(s, o.warmup, o.repeat, [&] { ex.enqueue(); });
    GraphExec ge;
    const std::string why = capture(ex, ge);
    if (why.empty()) {
      res.unet_graph_ms =
          time_back_to_back(s, o.warmup, o.repeat, [&] { DIFFRT_CUDA_CHECK(cudaGraphLaunch(ge.exec, s)); });
    } else {
      res.notes.push_back("UNet graph not timed: " + why);
    }
    peak = std::max(peak, device_used_bytes());
  }
  if (o.vae && w.latent_model) {
    nvtx::Range range{"bench: vae decode"};
    CudaExecutor ex(mf, weights, ctx, mf.vae.graph, w.vae_in);
    res.vae_arena_bytes = ex.arena_plan().bytes;
    std::vector<float> out(ex.plan().shapes[size_t(mf.vae.graph.output)].numel());
    ex.run(w.vae_inputs(), out.data());
    res.vae_ms = time_back_to_back(s, 0, std::max(1, o.vae_repeat), [&] { ex.enqueue(); });
    for (float v : ex.download(mf.vae.graph.output))
      if (!std::isfinite(v)) {
        res.vae_finite = false;
        break;
      }
    if (!res.vae_finite)
      res.notes.push_back(std::string("the VAE decode produced NaN/Inf in ") + dtype_name(ex.dtype()) +
                          " (random latents; an fp16 SD VAE can overflow): its timing is still valid");
    peak = std::max(peak, device_used_bytes());
  }
  res.peak_device_bytes = peak > baseline_used ? peak - baseline_used : 0;
  return res;
}

std::vector<ProfiledGraph> profile_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                        const Workload& w, int warmup, int repeats, bool vae) {
  if (warmup < 1 || repeats < 1) fail(ErrorCode::InvalidArgument, "profile: --warmup and --repeat must be >= 1");
  const TensorBytes tb = tensor_bytes(mf);
  std::vector<ProfiledGraph> out;
  out.push_back(profile_graph(mf, weights, ctx, mf.graph, w.unet_in, w.unet_inputs(), warmup, repeats, "unet", tb));
  if (vae && w.latent_model)
    out.push_back(profile_graph(mf, weights, ctx, mf.vae.graph, w.vae_in, w.vae_inputs(), warmup, repeats,
                                "vae_decode", tb));
  return out;
}

Ceilings measure_ceilings(CudaContext& ctx, DType dtype) {
  Ceilings c;
  const cudaStream_t s = ctx.stream();
  {
    const size_t bytes = size_t(512) << 20;
    DeviceBuffer a(bytes), b(bytes);
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(a.get(), 0, bytes, s));
    const std::vector<double> ms = time_back_to_back(s, 1, 5, [&] {
      DIFFRT_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
    });
    c.copy_gbps = 2.0 * double(bytes) / (*std::min_element(ms.begin(), ms.end()) * 1e6);
  }
  {
    const int m = 8192;
    const size_t bytes = size_t(m) * size_t(m) * dtype_size(dtype);
    DeviceBuffer x(bytes), wt(bytes), y(bytes);
    // Small non-zero operands (0x3C bytes: 1.06 in fp16, 0.011 in bf16/fp32): no overflow over K = 8192.
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(x.get(), 0x3C, bytes, s));
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(wt.get(), 0x3C, bytes, s));
    LinearParams p;
    p.x = x.get(); p.w = wt.get(); p.y = y.get();
    p.m = p.n = p.k = m;
    p.dtype = dtype;
    const std::vector<double> ms = time_back_to_back(s, 1, 5, [&] { linear_cuda(p, ctx.gemm(), s); });
    c.gemm_tflops = 2.0 * double(m) * m * m / (*std::min_element(ms.begin(), ms.end()) * 1e9);
  }
  return c;
}

}  // namespace diffrt
