// GPU sampling loop (contract in cuda_sampler.h). Host code only: it drives the executor, the generic fused step
// (kernels/sampler_step/sampler_step.cu) and the helpers in cuda_kernels.cu on the context's stream, in named
// stages: validate + plan, device tables, sampler state and inputs, noise, time embeddings, capture, the loop,
// readback. The plan is runtime/sampler_plan.h's, the same the CPU loop runs, so both loops execute identical
// step programs (the CPU reference is the semantics).
// Tested by tests/gpu/executor_test.cpp (GPU vs CPU loop for every scheduler class, batch independence, graph
// replay == eager) and tests/gpu/sd_test.cpp (text-conditioned loop vs the CPU and StableDiffusionPipeline).
#include "runtime/cuda/cuda_sampler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include "base/error.h"
#include "kernels/sampler_step/sampler_step_cuda.h"
#include "kernels/timestep_embedding/timestep_embedding_cuda.h"
#include "runtime/cuda/cuda_kernels.h"
#include "runtime/cuda/nvtx.h"
#include "runtime/rng.h"

namespace diffrt {
namespace {

static_assert(std::is_trivially_copyable_v<StepRow>, "StepRow is uploaded as raw bytes");

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

void upload(DeviceBuffer& d, const void* src, size_t bytes, cudaStream_t s) {
  d.allocate(bytes);
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d.get(), src, bytes, cudaMemcpyHostToDevice, s));
}

// ---- stage 1: validate and plan ---------------------------------------------------------------------------
struct Setup {
  SamplerPlan plan;
  int B = 0, H = 0, W = 0, C = 0, Cin = 0, Cm = 0, Bm = 0;
  int64_t n_per = 0;
  std::vector<int32_t> labels;
};

Setup validate_and_plan(const ModelFile& mf, const SchedulerConfig& cfg, const SampleRequest& r,
                        const CudaSamplerOptions& opt, const CudaTextContext& text, const SamplerInputs& in) {
  const Graph& g = mf.graph;
  Setup st;
  st.Cm = g.out_channels;
  st.plan = plan_for_request(cfg, r, st.Cm);
  if (g.timestep < 0) fail(ErrorCode::InvalidModel, "the sampler needs a denoiser graph with a timestep input");
  if (g.context >= 0 && (!text.data || text.len < 1))
    fail(ErrorCode::InvalidArgument, "this model is text-conditioned: the sampler needs its encoder_hidden_states");
  if (g.context < 0 && (text.data || text.len != 0))
    fail(ErrorCode::InvalidArgument, "this model is not text-conditioned: it takes no encoder_hidden_states");
  if (r.text_cfg && g.context < 0) fail(ErrorCode::InvalidArgument, "sample request: text_cfg needs a text-conditioned model");
  st.B = r.batch; st.H = r.height; st.W = r.width; st.C = r.channels;
  st.Cin = r.model_in_channels ? r.model_in_channels : r.channels;
  if (st.Cin != g.in_channels)
    fail(ErrorCode::InvalidArgument, "sample request: the model takes " + std::to_string(g.in_channels) +
                                         " input channels, the request gives " + std::to_string(st.Cin) +
                                         " (channels " + std::to_string(r.channels) + ", model_in_channels " +
                                         std::to_string(r.model_in_channels) + ")");
  if (st.Cin > st.C && !in.model_in_extra) fail(ErrorCode::InvalidArgument, "model_in_channels > channels needs model_in_extra");
  if (st.plan.reads_image && !in.image_latents) fail(ErrorCode::InvalidArgument, "this request needs image_latents");
  if (st.plan.reads_mask && !in.mask) fail(ErrorCode::InvalidArgument, "legacy inpainting needs a mask");
  if (opt.max_steps_in_flight < 1) fail(ErrorCode::InvalidArgument, "max_steps_in_flight must be >= 1");
  st.Bm = model_batch(r);
  st.n_per = int64_t(st.H) * st.W * st.C;
  st.labels = model_labels(r);
  check_class_labels(g, mf.conditioning.num_classes, st.Bm, st.labels.empty() ? nullptr : st.labels.data());
  return st;
}

// ---- stage 2: device tables (rows, model timesteps, the call counter) ----------------------------------------
struct Tables {
  DeviceBuffer rows, init, ttable, counter;
  bool any_thresh = false, any_noise = false;
  uint32_t mask = 0;
  std::vector<int> noise_buffer_of_row;  // per call: index of its torch draw among the uploaded ones, or -1
  int noise_buffers = 0;
};

Tables device_tables(const SamplerPlan& plan, cudaStream_t s) {
  Tables t;
  std::vector<StepRow> rows = plan.rows;
  t.noise_buffer_of_row.assign(rows.size(), -1);
  for (size_t i = 0; i < rows.size(); ++i) {
    StepRow& r = rows[i];
    t.any_thresh |= r.thresh_at >= 0;
    t.mask |= r.read_mask | r.write_mask;
    if (r.noise == StepNoise::Step && (r.read_mask & (1u << step_reg::kZ))) {
      t.any_noise = true;
      t.noise_buffer_of_row[i] = t.noise_buffers;
      r.noise_slot = t.noise_buffers++;  // draws the step never reads (Euler's) are not uploaded
    }
  }
  t.mask |= plan.init.read_mask | plan.init.write_mask;
  upload(t.rows, rows.data(), rows.size() * sizeof(StepRow), s);
  upload(t.init, &plan.init, sizeof(StepRow), s);
  upload(t.ttable, plan.model_timesteps.data(), plan.model_timesteps.size() * sizeof(float), s);
  t.counter.allocate(256);
  DIFFRT_CUDA_CHECK(cudaMemsetAsync(t.counter.get(), 0, sizeof(int), s));
  return t;
}

// ---- stage 3: sampler state and constant inputs ------------------------------------------------------------
struct State {
  std::vector<DeviceBuffer> slots;
  DeviceBuffer image, init_noise, mask;
};

State sampler_state(const Setup& st, const SamplerInputs& in, CudaExecutor& ex, cudaStream_t s) {
  State d;
  const size_t bytes = size_t(st.B) * size_t(st.n_per) * sizeof(float);
  d.slots.resize(size_t(st.plan.num_slots));
  for (DeviceBuffer& b : d.slots) {
    b.allocate(bytes);
    DIFFRT_CUDA_CHECK(cudaMemsetAsync(b.get(), 0, bytes, s));
  }
  d.init_noise.allocate(bytes);
  if (st.plan.reads_image) upload(d.image, in.image_latents, bytes, s);
  if (st.plan.reads_mask) upload(d.mask, in.mask, size_t(st.B) * st.H * st.W * sizeof(float), s);
  if (st.Cin > st.C) {
    // The model input's constant channels (mask, masked-image latents), written once in the model dtype; the step
    // writes only channels [0, C).
    const size_t pix = size_t(st.Bm) * st.H * st.W;
    std::vector<float> full(pix * size_t(st.Cin), 0.0f);
    const size_t extra = size_t(st.Cin - st.C);
    for (size_t q = 0; q < pix; ++q)
      std::copy(in.model_in_extra + q * extra, in.model_in_extra + (q + 1) * extra, full.begin() + q * st.Cin + st.C);
    std::vector<uint8_t> conv(full.size() * dtype_size(ex.dtype()));
    from_f32(ex.dtype(), full.data(), conv.data(), full.size());
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(ex.sample(), conv.data(), conv.size(), cudaMemcpyHostToDevice, s));
    DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // conv is a host temporary
  }
  return d;
}

// ---- stage 4: noise -----------------------------------------------------------------------------------------
// Torch mode draws on the host in diffusers' order (torch's CPU generator is sequential): the initial noise, then
// per call the draws its step() makes; the draws a step reads are uploaded up front when they fit in
// max_torch_noise_bytes, else streamed one call at a time through two pinned staging buffers.
struct Noise {
  DeviceBuffer draws;
  int64_t stride = 0;
  bool streamed = false;
  std::unique_ptr<PinnedHost> staging[2];
  Events staging_done;
  int staged = 0;
  int drawn = 0;  // generator draws made so far (torch mode)
};

void host_draw(const SampleRequest& r, const SamplerInputs& in, TorchGenerator& gen, int index, std::vector<float>& out,
               int B, int C, int H, int W) {
  if (in.step_noise) {
    out.assign(size_t(B) * H * W * C, 0.0f);
    in.step_noise(index, out.data());
  } else {
    (void)r;
    out = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
  }
}

Noise prepare_noise(const Setup& st, const Tables& t, const SampleRequest& r, const SamplerInputs& in,
                    const CudaSamplerOptions& opt, TorchGenerator& gen, State& d, CudaSamplerStats& stats,
                    cudaStream_t s) {
  Noise nz;
  const size_t bytes = size_t(st.B) * size_t(st.n_per) * sizeof(float);
  const int B = st.B, C = st.C, H = st.H, W = st.W;
  std::vector<float> host;
  if (in.initial_noise) {
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d.init_noise.get(), in.initial_noise, bytes, cudaMemcpyHostToDevice, s));
  } else if (r.rng == RngKind::Torch) {
    host = torch_randn_nchw_to_nhwc(gen, B, C, H, W);
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(d.init_noise.get(), host.data(), bytes, cudaMemcpyHostToDevice, s));
  } else {
    cuda_rt::philox_initial_noise(d.init_noise.as<float>(), r.seed, r.first_sample_index, B, H, W, C, s);
  }
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // host is a temporary
  const bool host_draws = r.rng == RngKind::Torch || bool(in.step_noise);
  if (!host_draws || !t.any_noise) return nz;
  if (uint64_t(bytes) * uint64_t(t.noise_buffers) <= opt.max_torch_noise_bytes) {
    nz.draws.allocate(bytes * size_t(t.noise_buffers));
    nz.stride = st.n_per * B;
    const SamplerPlan& p = st.plan;
    for (int i = 0; i < p.calls(); ++i)
      for (int k = 0; k < p.draws[size_t(i)]; ++k) {
        host_draw(r, in, gen, nz.drawn++, host, B, C, H, W);
        const int buf = t.noise_buffer_of_row[size_t(i)];
        if (buf < 0) continue;  // drawn (the generator advances) but never read
        DIFFRT_CUDA_CHECK(cudaMemcpyAsync(nz.draws.as<char>() + bytes * size_t(buf), host.data(), bytes,
                                          cudaMemcpyHostToDevice, s));
        DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // host is refilled by the next draw
      }
  } else {
    nz.streamed = stats.torch_noise_streamed = true;
    nz.draws.allocate(bytes);  // one buffer, refilled before each call that reads noise
    nz.stride = 0;
    for (auto& p : nz.staging) p = std::make_unique<PinnedHost>(bytes);
    nz.staging_done.ev.resize(2);
    for (auto& e : nz.staging_done.ev) DIFFRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  return nz;
}

// Streaming mode: draws call i's noise on the host and queues its upload before the call's step.
void stream_call_noise(Noise& nz, const Setup& st, const Tables& t, const SampleRequest& r, const SamplerInputs& in,
                       TorchGenerator& gen, int i, cudaStream_t s) {
  std::vector<float> host;
  const size_t bytes = size_t(st.B) * size_t(st.n_per) * sizeof(float);
  for (int k = 0; k < st.plan.draws[size_t(i)]; ++k) {
    host_draw(r, in, gen, nz.drawn++, host, st.B, st.C, st.H, st.W);
    if (t.noise_buffer_of_row[size_t(i)] < 0) continue;
    PinnedHost& buf = *nz.staging[nz.staged & 1];
    cudaEvent_t done = nz.staging_done.ev[size_t(nz.staged & 1)];
    if (nz.staged >= 2) DIFFRT_CUDA_CHECK(cudaEventSynchronize(done));  // its previous copy has finished
    std::memcpy(buf.p, host.data(), bytes);
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(nz.draws.get(), buf.p, bytes, cudaMemcpyHostToDevice, s));
    DIFFRT_CUDA_CHECK(cudaEventRecord(done, s));
    ++nz.staged;
  }
}

// ---- stage 5: time embeddings of every call, precomputed -------------------------------------------------------
struct TimeEmbeddings {
  DeviceBuffer temb, tsteps;
  bool on = false;
};

TimeEmbeddings precompute_time_embeddings(const ModelFile& mf, const CudaWeights& weights, CudaExecutor& ex,
                                          const Setup& st, const Tables& t, const CudaSamplerOptions& opt,
                                          cudaStream_t s) {
  TimeEmbeddings te;
  const Graph& g = mf.graph;
  const int node = opt.precompute_time_embeddings ? time_embedding_node(g) : -1;
  if (node < 0) return te;
  const Node& nd = g.nodes[size_t(node)];
  const auto& a = std::get<TimeEmbeddingAttrs>(nd.attrs);
  const int total = st.plan.calls();
  const uint64_t bytes = uint64_t(total) * uint64_t(st.Bm) * uint64_t(a.out_dim) * dtype_size(ex.dtype());
  if (bytes > opt.max_time_embedding_bytes) return te;
  std::vector<float> tsteps(size_t(total) * size_t(st.Bm));
  for (int i = 0; i < total; ++i) std::fill_n(tsteps.begin() + size_t(i) * size_t(st.Bm), st.Bm, st.plan.model_timesteps[size_t(i)]);
  upload(te.tsteps, tsteps.data(), tsteps.size() * sizeof(float), s);
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));  // tsteps is a host temporary
  te.temb.allocate(bytes);
  auto wt = [&](const char* role) -> const void* {
    auto it = nd.weights.find(role);
    return it == nd.weights.end() ? nullptr : weights.get(it->second);
  };
  TimestepEmbeddingParams tp;
  tp.timesteps = te.tsteps.as<float>();
  tp.class_labels = nd.inputs.size() > 1 ? ex.labels() : nullptr;
  tp.w1 = wt("w1"); tp.b1 = wt("b1"); tp.w2 = wt("w2"); tp.b2 = wt("b2");
  tp.class_table = wt("class_table");
  tp.out = te.temb.get();
  tp.n = st.Bm; tp.dim = a.dim; tp.out_dim = a.out_dim; tp.num_classes = a.num_classes;
  tp.flip = a.flip; tp.freq_shift = a.freq_shift;
  tp.dtype = ex.dtype();
  timestep_embedding_steps_cuda(tp, total, s);
  ex.use_time_embedding_table(te.temb.get(), t.counter.as<int>(), total);
  (void)t;
  te.on = true;
  return te;
}

// ---- stage 6: capture -------------------------------------------------------------------------------------------
// Captures one model call ([timesteps <- table[counter]] + UNet + fused step + ++counter) as a graph. Everything it
// launches is loaded beforehand (the eager UNet run, sampler_step_cuda_preload, cuda_rt::preload), so lazy module
// loading cannot break the capture; any failure is recorded in the stats, never swallowed.
template <class Enqueue>
void capture(GraphHolder& gh, Enqueue&& enqueue_call, const CudaSamplerOptions& opt, CudaSamplerStats& st,
             cudaStream_t s) {
  if (!opt.use_cuda_graph) {
    st.graph_fallback = "disabled by options";
    return;
  }
  if (opt.debug) {
    st.graph_fallback = "debug mode runs eagerly";
    return;
  }
  nvtx::Range capture_range{"capture step graph"};
  cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  if (e == cudaSuccess) {
    try {
      enqueue_call();
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
  if (!st.graph_fallback.empty()) {
    (void)cudaGetLastError();  // clear a non-sticky capture error; the stats say what happened
    st.graph_capture_failed = true;
  }
  st.graph_used = st.graph_fallback.empty();
}

}  // namespace

std::vector<float> run_sampler_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                    const SchedulerConfig& cfg, const SampleRequest& r, const ProgressFn& progress,
                                    const CudaSamplerOptions& opt, CudaSamplerStats* stats, const CudaTextContext& text,
                                    const SamplerInputs& in) {
  std::optional<nvtx::Range> setup_range(std::in_place, "sampler setup");
  const Graph& g = mf.graph;
  // 1. validate + plan
  const Setup st = validate_and_plan(mf, cfg, r, opt, text, in);
  const SamplerPlan& plan = st.plan;
  const int total = plan.calls();
  CudaSamplerStats stt;
  stt.steps = plan.steps;
  stt.model_calls = total;

  CudaExecutor ex(mf, weights, ctx, g, PlanInputs{st.Bm, st.H, st.W, g.context >= 0 ? text.len : 0});
  ex.debug = opt.debug;
  if (g.context >= 0) ex.upload_context(text.data);  // [Bm, L, D], constant for the whole loop
  stt.arena_bytes = ex.arena_plan().bytes;
  const ValueShape& os = ex.plan().shapes[size_t(g.output)];
  if (os.h != st.H || os.w != st.W || os.c != st.Cm)
    fail(ErrorCode::InvalidModel, "model output " + os.str() + " does not match the sample size");
  const cudaStream_t s = ctx.stream();
  if (!st.labels.empty())
    DIFFRT_CUDA_CHECK(cudaMemcpyAsync(ex.labels(), st.labels.data(), st.labels.size() * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, s));
  // 2. device tables
  Tables t = device_tables(plan, s);
  int* counter = t.counter.as<int>();
  // 3. state and inputs
  State d = sampler_state(st, in, ex, s);
  // 4. noise (initial noise, then the step draws)
  TorchGenerator own(r.seed);
  TorchGenerator& gen = in.generator ? *in.generator : own;
  Noise nz = prepare_noise(st, t, r, in, opt, gen, d, stt, s);

  SamplerStepDeviceParams sp;
  SamplerStepParams& p = sp.base;
  p.b = st.B; p.h = st.H; p.w = st.W; p.c = st.C; p.cm = st.Cm; p.cin = st.Cin;
  p.cfg = guidance_on(r);
  p.cfg_order = r.cfg_order;
  p.guidance_scale = r.guidance_scale;
  p.thresh_ratio = plan.thresh_ratio;
  p.thresh_max = plan.thresh_max;
  for (int k = 0; k < plan.num_slots; ++k) p.slots[k] = d.slots[size_t(k)].as<float>();
  p.image = d.image.as<float>();
  p.init_noise = d.init_noise.as<float>();
  p.mask = d.mask.as<float>();
  p.seed = r.seed;
  p.sample_index_base = r.first_sample_index;
  sp.model_dtype = ex.dtype();
  sp.model_out = ex.output();
  sp.model_in = ex.sample();
  sp.table_mask = t.mask;
  sp.any_thresh = t.any_thresh;
  sp.any_noise = t.any_noise;
  sp.noise = (r.rng == RngKind::Torch || in.step_noise) ? nz.draws.as<float>() : nullptr;
  sp.noise_draw_stride = nz.stride;
  DeviceBuffer d_ws(t.any_thresh ? sampler_step_workspace_bytes(st.B, st.H, st.W, st.C) : 0);
  sp.workspace = d_ws.get();
  sp.workspace_bytes = d_ws.bytes();
  // The init row: x from the noise (and the image), then the first model input.
  {
    SamplerStepDeviceParams ip = sp;
    ip.rows = t.init.as<StepRow>();
    ip.counter = nullptr;
    ip.any_thresh = false;
    sampler_step_cuda(ip, s);
  }
  sp.rows = t.rows.as<StepRow>();
  sp.counter = counter;

  // 5. time embeddings
  TimeEmbeddings te = precompute_time_embeddings(mf, weights, ex, st, t, opt, s);
  stt.time_embeddings_precomputed = te.on;

  // One model call, device-indexed throughout: capturable.
  auto enqueue_call = [&]() {
    if (!te.on) cuda_rt::fill_timesteps(t.ttable.as<float>(), counter, ex.timesteps(), st.Bm, s);
    ex.enqueue();
    sampler_step_cuda(sp, s);
    cuda_rt::increment_counter(counter, s);
  };

  // 6. warm-up (plans, algorithm search, buffer growth, module loads) and capture
  sampler_step_cuda_preload();
  cuda_rt::preload();
  if (!te.on) cuda_rt::fill_timesteps(t.ttable.as<float>(), counter, ex.timesteps(), st.Bm, s);
  ex.enqueue();  // the UNet only reads its inputs: running it once changes no sampling state
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  GraphHolder gh;
  capture(gh, enqueue_call, opt, stt, s);

  // 7. the loop
  setup_range.reset();
  Events timing_ev;  // benchmark instrumentation: [before call 0, after call 0, ..., after call total-1]
  if (opt.timing) {
    timing_ev.ev.resize(size_t(total) + 1);
    for (auto& e : timing_ev.ev) DIFFRT_CUDA_CHECK(cudaEventCreate(&e));
    DIFFRT_CUDA_CHECK(cudaEventRecord(timing_ev.ev[0], s));
  }
  const int inflight = opt.max_steps_in_flight;
  Events call_done;
  if (progress) {
    call_done.ev.resize(size_t(inflight) + 1);
    for (auto& e : call_done.ev) DIFFRT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  const size_t R = call_done.ev.size();
  int finished = 0, reported = 0;  // calls known complete; steps reported
  auto complete = [&]() {
    const int done = plan.progress_after[size_t(finished)];
    ++finished;
    if (done > reported) {
      reported = done;
      if (!progress(done, plan.steps)) {
        (void)cudaStreamSynchronize(s);
        fail(ErrorCode::Cancelled, "sampling cancelled by the progress callback after step " + std::to_string(done) +
                                       " of " + std::to_string(plan.steps));
      }
    }
  };
  for (int i = 0; i < total; ++i) {
    if (progress) {
      while (i - finished >= inflight) {
        DIFFRT_CUDA_CHECK(cudaEventSynchronize(call_done.ev[size_t(finished) % R]));
        complete();
      }
      while (finished < i) {
        cudaError_t q = cudaEventQuery(call_done.ev[size_t(finished) % R]);
        if (q == cudaErrorNotReady) break;
        DIFFRT_CUDA_CHECK(q);
        complete();
      }
    }
    if (nz.streamed) stream_call_noise(nz, st, t, r, in, gen, i, s);
    {
      char label[48];
      std::snprintf(label, sizeof(label), "call %d/%d", i + 1, total);
      nvtx::Range step_range{label};
      if (gh.exec) DIFFRT_CUDA_CHECK(cudaGraphLaunch(gh.exec, s));
      else enqueue_call();
    }
    if (opt.timing) DIFFRT_CUDA_CHECK(cudaEventRecord(timing_ev.ev[size_t(i) + 1], s));
    if (progress) DIFFRT_CUDA_CHECK(cudaEventRecord(call_done.ev[size_t(i) % R], s));
  }
  // 8. readback
  std::vector<float> x(size_t(st.B) * size_t(st.n_per));
  DIFFRT_CUDA_CHECK(cudaMemcpyAsync(x.data(), d.slots[0].get(), x.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
  DIFFRT_CUDA_CHECK(cudaStreamSynchronize(s));
  while (progress && finished < total) complete();
  if (opt.timing) {
    CudaStepTiming& tm = *opt.timing;
    tm.step_ms.assign(size_t(total), 0.0f);
    for (int i = 0; i < total; ++i)
      DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&tm.step_ms[size_t(i)], timing_ev.ev[size_t(i)], timing_ev.ev[size_t(i) + 1]));
    DIFFRT_CUDA_CHECK(cudaEventElapsedTime(&tm.loop_ms, timing_ev.ev[0], timing_ev.ev[size_t(total)]));
    size_t free_b = 0, total_b = 0;
    DIFFRT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    tm.device_used_bytes = uint64_t(total_b - free_b);
  }
  if (stats) *stats = stt;
  return x;
}

}  // namespace diffrt
