// GPU sampling loop (contract in cuda_sampler.h). Host code only: it drives the executor, the fused scheduler
// step (kernels/scheduler_step/scheduler_step.cu) and the helpers in cuda_kernels.cu on the context's stream.
// Tested by tests/gpu/executor_test.cpp (GPU vs CPU loop, batch independence, graph replay == eager) and
// tests/gpu/sd_test.cpp (text-conditioned loop vs the CPU and vs StableDiffusionPipeline, graph replay == eager).
#include "runtime/cuda/cuda_sampler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <type_traits>

#include "base/error.h"
#include "kernels/timestep_embedding/timestep_embedding_cuda.h"
#include "runtime/cuda/cuda_kernels.h"
#include "runtime/cuda/nvtx.h"
#include "kernels/scheduler_step/scheduler_step_cuda.h"
#include "runtime/rng.h"

namespace diffrt {
namespace {

static_assert(std::is_trivially_copyable_v<StepCoeffs>, "StepCoeffs is uploaded as raw bytes");


// RAII for the few raw CUDA objects of one run.
struct Events {
  std::vector<cudaEvent_t> ev;
  ~Events() {
    for (cudaEvent_t e : ev) cudaEventDestroy(e);
  }
};
struct GraphHolder {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~GraphHolder() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};
struct PinnedHost {
  void* p = nullptr;
  explicit PinnedHost(size_t bytes) { DIFFRT_CUDA_CHECK(cudaMallocHost(&p, bytes)); }
  ~PinnedHost() {
    if (p) cudaFreeHost(p);
  }
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;
};

// The single time-embedding node fed by the graph's timestep input, or -1 when the graph has none or several.
int time_embedding_node(const Graph& g) {
  int found = -1;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (std::holds_alternative<TimeEmbeddingAttrs>(g.nodes[k].attrs)) {
      if (found >= 0) return -1;
      found = int(k);
    }
  if (found >= 0 && (g.nodes[size_t(found)].inputs.empty() || g.nodes[size_t(found)].inputs[0] != g.timestep)) return -1;
  return found;
}

}  // namespace

std::vector<float> run_sampler_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                    const SchedulerConfig& cfg, const SampleRequest& r, const ProgressFn& progress,
                                    const CudaSamplerOptions& opt, CudaSamplerStats* stats, const CudaTextContext& text) {
  std::optional<nvtx::Range> setup_range(std::in_place, "sampler setup");
  const Graph& g = mf.graph;
  const int cm = g.out_channels;
  validate_sample_request(cfg, r, cm);
  if (g.timestep < 0) fail(ErrorCode::InvalidModel, "the sampler needs a denoiser graph with a timestep input");
  if (g.context >= 0 && (!text.data || text.len < 1))
    fail(ErrorCode::InvalidArgument, "this model is text-conditioned: the sampler needs its encoder_hidden_states");
  if (g.context < 0 && (text.data || text.len != 0))
    fail(ErrorCode::InvalidArgument, "this model is not text-conditioned: it takes no encoder_hidden_states");
  if (r.text_cfg && g.context < 0)
    fail(ErrorCode::InvalidArgument, "sample request: text_cfg needs a text-conditioned model");
  if (r.channels != g.in_channels)
    fail(ErrorCode::InvalidArgument, "sample request: channels = " + std::to_string(r.channels) +
                                         " but the model takes " + std::to_string(g.in_channels));
  if (opt.max_steps_in_flight < 1) fail(ErrorCode::InvalidArgument, "max_steps_in_flight must be >= 1");
  const int steps = effective_steps(r);
  const SamplingPlan plan = make_sampling_plan(cfg, r.sampler, steps, r.eta);
  const int total = int(plan.coeffs.size());
  const int B = r.batch, H = r.height, W = r.width, C = r.channels;
  const int Bm = model_batch(r);
  const int64_t n_per = int64_t(H) * W * C;
  CudaSamplerStats st;
  st.steps = total;

  // Model-side labels, exactly as the CPU loop builds them.
  const std::vector<int32_t> labels = model_labels(r);
  check_class_labels(g, mf.conditioning.num_classes, Bm, labels.empty() ? nullptr : labels.data());

  CudaExecutor ex(mf, weights, ctx, g, PlanInputs{Bm, H, W, g.context >= 0 ? text.len : 0});
  ex.debug = opt.debug;
  if (g.context >= 0) ex.upload_context(text.data);  // [Bm, L, D], constant for the whole loop
  st.arena_bytes = ex.arena_plan().bytes;
  const ValueShape& os = ex.plan().shapes[size_t(g.output)];
  if (os.h != H || os.w != W || os.c != cm)
    fail(ErrorCode::InvalidModel, "model output " + os.str() + " does not match the sample size");
  const cudaStream_t s = ctx.stream();
  const DType dt = ex.dtype();

  // ---- device state and tables --------------------------------------------------------------------------
  DeviceBuffer d_x(size_t(B) * size_t(n_per) * sizeof(float));
  DeviceBuffer d_coeffs(size_t(total) * sizeof(StepCoeffs));
  DeviceBuffer d_ttable(size_t(total) * sizeof(float));
  DeviceBuffer d_counter(256);
  std::vector<float> ttable(static_cast<size_t>(total));
  bool any_noise = false;
  for (int i = 0; i < total; ++i) {
    ttable[size_t(i)] = float(plan.coeffs[size_t(i)].timestep);
    any_noise = any_noise || plan.coeffs[size_t(i)].add_noise;
  }
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_coeffs.get(), plan.coeffs.data(), d_coeffs.bytes(), cudaMemcpyHostToDevice, s));
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_ttable.get(), ttable.data(), d_ttable.bytes(), cudaMemcpyHostToDevice, s));
  DIFFRT_CUDA_CHECK(cudaMemsetAsync(d_counter.get(), 0, sizeof(int), s));
  if (!labels.empty())
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(ex.labels(), labels.data(), labels.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  int* counter = d_counter.as<int>();

  // ---- noise --------------------------------------------------------------------------------------------
  const size_t step_noise_bytes = size_t(B) * size_t(n_per) * sizeof(float);
  DeviceBuffer d_noise;
  std::unique_ptr<PinnedHost> staging[2];
  Events staging_done;
  TorchGenerator gen(r.seed);
  std::vector<float> host_noise;
  int64_t noise_stride = 0;
  if (r.rng == RngKind::Torch) {
    std::vector<float> x0 = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_x.get(), x0.data(), step_noise_bytes, cudaMemcpyHostToDevice, s));
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // x0 is a host temporary
    if (any_noise) {
      if (uint64_t(step_noise_bytes) * uint64_t(total) <= opt.max_torch_noise_bytes) {
        d_noise.allocate(step_noise_bytes * size_t(total));
        noise_stride = n_per * B;
        for (int i = 0; i < total; ++i)  // diffusers' order: one randn per noisy step
          if (plan.coeffs[size_t(i)].add_noise) {
            host_noise = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
            DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_noise.as<char>() + step_noise_bytes * size_t(i), host_noise.data(),
                                              step_noise_bytes, cudaMemcpyHostToDevice, s));
            DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // host_noise is refilled by the next draw
          }
      } else {
        st.torch_noise_streamed = true;
        d_noise.allocate(step_noise_bytes);  // one slot, refilled before each noisy step
        noise_stride = 0;
        for (auto& p : staging) p = std::make_unique<PinnedHost>(step_noise_bytes);
        staging_done.ev.resize(2);
        for (auto& e : staging_done.ev) DIFFRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      }
    }
  } else {
    cuda_rt::philox_initial_noise(d_x.as<float>(), r.seed, r.first_sample_index, B, H, W, C, s);
  }
  cuda_rt::broadcast_model_in(d_x.as<float>(), ex.sample(), dt, B, Bm, n_per, s);

  // ---- scheduler step params ----------------------------------------------------------------------------
  SchedulerStepDeviceParams sp;
  SchedulerStepParams& p = sp.base;
  p = make_step_params(cfg, r, cm);
  p.x = d_x.as<float>();
  p.noise_source = !any_noise ? NoiseSource::None : r.rng == RngKind::Torch ? NoiseSource::Buffer : NoiseSource::Philox;
  p.noise = d_noise.as<float>();
  sp.model_dtype = dt;
  sp.model_out = ex.output();
  sp.model_in = ex.sample();
  sp.coeff_table = d_coeffs.as<StepCoeffs>();
  sp.step_counter = counter;
  sp.noise_step_stride = noise_stride;
  DeviceBuffer d_ws(scheduler_step_workspace_bytes(p));
  sp.workspace = d_ws.get();
  sp.workspace_bytes = d_ws.bytes();

  // ---- time embeddings of every step, precomputed -------------------------------------------------------
  DeviceBuffer d_temb, d_tsteps;
  const int temb_node = opt.precompute_time_embeddings ? time_embedding_node(g) : -1;
  if (temb_node >= 0) {
    const Node& nd = g.nodes[size_t(temb_node)];
    const auto& a = std::get<TimeEmbeddingAttrs>(nd.attrs);
    const uint64_t bytes = uint64_t(total) * uint64_t(Bm) * uint64_t(a.out_dim) * dtype_size(dt);
    if (bytes <= opt.max_time_embedding_bytes) {
      std::vector<float> tsteps(size_t(total) * size_t(Bm));
      for (int i = 0; i < total; ++i) std::fill_n(tsteps.begin() + size_t(i) * size_t(Bm), Bm, ttable[size_t(i)]);
      d_tsteps.allocate(tsteps.size() * sizeof(float));
      DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_tsteps.get(), tsteps.data(), d_tsteps.bytes(), cudaMemcpyHostToDevice, s));
      DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // tsteps is a host temporary
      d_temb.allocate(bytes);
      auto wt = [&](const char* role) -> const void* {
        auto it = nd.weights.find(role);
        return it == nd.weights.end() ? nullptr : weights.get(it->second);
      };
      TimestepEmbeddingParams tp;
      tp.timesteps = d_tsteps.as<float>();
      tp.class_labels = nd.inputs.size() > 1 ? ex.labels() : nullptr;
      tp.w1 = wt("w1"); tp.b1 = wt("b1"); tp.w2 = wt("w2"); tp.b2 = wt("b2");
      tp.class_table = wt("class_table");
      tp.out = d_temb.get();
      tp.n = Bm; tp.dim = a.dim; tp.out_dim = a.out_dim; tp.num_classes = a.num_classes;
      tp.flip = a.flip; tp.freq_shift = a.freq_shift;
      tp.dtype = dt;
      timestep_embedding_steps_cuda(tp, total, s);
      ex.use_time_embedding_table(d_temb.get(), counter, total);
      st.time_embeddings_precomputed = true;
    }
  }

  // One step, device-indexed throughout: capturable.
  auto enqueue_step = [&]() {
    if (!st.time_embeddings_precomputed) cuda_rt::fill_timesteps(d_ttable.as<float>(), counter, ex.timesteps(), Bm, s);
    ex.enqueue();
    scheduler_step_cuda_ex(sp, s);
    cuda_rt::increment_counter(counter, s);
  };

  // ---- warm-up (plans, algorithm search, buffer growth) and capture ------------------------------------------
  if (!st.time_embeddings_precomputed) cuda_rt::fill_timesteps(d_ttable.as<float>(), counter, ex.timesteps(), Bm, s);
  ex.enqueue();  // the UNet only reads its inputs: running it once changes no sampling state
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));

  GraphHolder gh;
  if (!opt.use_cuda_graph) {
    st.graph_fallback = "disabled by options";
  } else if (opt.debug) {
    st.graph_fallback = "debug mode runs eagerly";
  } else {
    nvtx::Range capture_range{"capture step graph"};
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
      try {
        enqueue_step();
      } catch (const std::exception& x) {
        st.graph_fallback = std::string("capture: ") + x.what();
      }
      cudaGraph_t graph = nullptr;
      cudaError_t e2 = cudaStreamEndCapture(s, &graph);
      gh.graph = graph;
      if (st.graph_fallback.empty() && e2 != cudaSuccess)
        st.graph_fallback = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e2);
      if (st.graph_fallback.empty()) {
        cudaError_t e3 = cudaGraphInstantiate(&gh.exec, gh.graph, 0);
        if (e3 != cudaSuccess) {
          gh.exec = nullptr;
          st.graph_fallback = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e3);
        }
      }
    } else {
      st.graph_fallback = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e);
    }
    if (!st.graph_fallback.empty()) (void)cudaGetLastError();  // clear a non-sticky capture error
    st.graph_used = st.graph_fallback.empty();
  }

  // ---- the loop -------------------------------------------------------------------------------------------
  setup_range.reset();
  Events timing_ev;  // benchmark instrumentation: [before step 0, after step 0, ..., after step total-1]
  if (opt.timing) {
    timing_ev.ev.resize(size_t(total) + 1);
    for (auto& e : timing_ev.ev) DIFFRT_CUDA_CHECK(cudaEventCreate(&e));
    DIFFRT_CUDA_CHECK(cudaEventRecord(timing_ev.ev[0], s));
  }
  const int inflight = opt.max_steps_in_flight;
  Events step_done;
  if (progress) {
    step_done.ev.resize(size_t(inflight) + 1);
    for (auto& e : step_done.ev) DIFFRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  const size_t R = step_done.ev.size();
  int reported = 0;
  auto report = [&]() {
    ++reported;
    if (!progress(reported, total)) {
      (void)cudaStreamSynchronize(s);
      fail(ErrorCode::Cancelled, "sampling cancelled by the progress callback after step " + std::to_string(reported) +
                                     " of " + std::to_string(total));
    }
  };
  int staged = 0;  // torch streaming: staging buffer parity
  for (int i = 0; i < total; ++i) {
    if (progress) {
      while (i - reported >= inflight) {
        DIFFRT_CUDA_CHECK(cudaEventSynchronize(step_done.ev[size_t(reported) % R]));
        report();
      }
      while (reported < i) {
        cudaError_t q = cudaEventQuery(step_done.ev[size_t(reported) % R]);
        if (q == cudaErrorNotReady) break;
        DIFFRT_CUDA_CHECK(q);
        report();
      }
    }
    if (st.torch_noise_streamed && plan.coeffs[size_t(i)].add_noise) {
      PinnedHost& buf = *staging[staged & 1];
      cudaEvent_t done = staging_done.ev[size_t(staged & 1)];
      if (staged >= 2) DIFFRT_CUDA_CHECK(cudaEventSynchronize(done));  // its previous copy has finished
      std::vector<float> z = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
      std::memcpy(buf.p, z.data(), step_noise_bytes);
      DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d_noise.get(), buf.p, step_noise_bytes, cudaMemcpyHostToDevice, s));
      DIFFRT_CUDA_CHECK(cudaEventRecord(done, s));
      ++staged;
    }
    {
      char label[48];
      std::snprintf(label, sizeof(label), "step %d/%d", i + 1, total);
      nvtx::Range step_range{label};
      if (gh.exec) {
        DIFFRT_CUDA_CHECK(cudaGraphLaunch(gh.exec, s));
      } else {
        enqueue_step();
      }
    }
    if (opt.timing) DIFFRT_CUDA_CHECK(cudaEventRecord(timing_ev.ev[size_t(i) + 1], s));
    if (progress) DIFFRT_CUDA_CHECK(cudaEventRecord(step_done.ev[size_t(i) % R], s));
  }
  std::vector<float> x(size_t(B) * size_t(n_per));
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(x.data(), d_x.get(), x.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  while (progress && reported < total) report();
  if (opt.timing) {
    CudaStepTiming& t = *opt.timing;
    t.step_ms.assign(size_t(total), 0.0f);
    for (int i = 0; i < total; ++i)
      DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&t.step_ms[size_t(i)], timing_ev.ev[size_t(i)], timing_ev.ev[size_t(i) + 1]));
    DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&t.loop_ms, timing_ev.ev[0], timing_ev.ev[size_t(total)]));
    size_t free_b = 0, total_b = 0;
    DIFFRT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    t.device_used_bytes = uint64_t(total_b - free_b);
  }
  if (stats) *stats = st;
  return x;
}

}  // namespace diffrt
