// The benchmark and profiling hooks (contract in diffrt_bench.hpp): the request is validated by the API like every
// sample request, then the session's backend runs the runtime's measurements (runtime/cpu_bench.h,
// runtime/cuda/cuda_bench.h) with the model's shared weights; the documents are assembled here.
// Tested by tests/cli/bench_cli_test.sh (through `diffrt bench` / `diffrt profile` on the CPU).
#include <chrono>

#include "api/api_internal.h"
#include "api/diffrt_bench.hpp"
#include "base/host_env.h"
#include "base/npy.h"
#include "runtime/bench_workload.h"
#include "runtime/graph_cost.h"
#include "runtime/latent_pipeline.h"
#include "runtime/profile_trace.h"
#ifdef DIFFRT_HAVE_CUDA
#include "runtime/cuda/cuda_env.h"
#endif

namespace diffrt::bench {

namespace {

using nlohmann::json;

// The benchmark's sample request through the API's validation: random text embeddings unless files are given
// (then the batch is theirs), class labels cycled over the model's classes, the model's default guidance.
diffrt::Workload build_workload(Session& s, const Workload& o) {
  const Model& model = s.model();
  const ModelInfo& info = model.info();
  const ModelFile& mf = ModelAccess::file(model);
  if (o.steps < 1 || o.steps > 10000) api::bad("--steps must be in [1, 10000]");
  if (!(o.guidance_scale == o.guidance_scale) || o.guidance_scale > 1000 ||
      (o.guidance_scale < 0 && o.guidance_scale != -1.0))
    api::bad("--guidance-scale must be a number in [0, 1000]");
  if (o.context_len < 1 || o.context_len > 4096) api::bad("--context-len must be in [1, 4096]");
  const bool text = info.context_dim > 0;
  if (!text && (!o.prompt_embeds.empty() || !o.negative_prompt_embeds.empty()))
    api::bad("--prompt-embeds: this model is not text-conditioned");

  SampleOptions so;
  so.sampler = o.sampler;
  so.karras = o.karras;
  so.steps = o.steps;
  so.eta = float(o.eta);
  so.seed = o.seed;
  so.batch = o.batch;
  so.height = o.height;
  so.width = o.width;
  so.guidance_scale = float(o.guidance_scale >= 0 ? o.guidance_scale : info.default_guidance_scale);
  so.output = text && !info.has_vae ? Output::Latents : Output::Images;
  TextEmbeds pos, neg;
  bool random_text = false;
  if (text) {
    if (!o.prompt_embeds.empty()) {
      pos = read_text_embeds(o.prompt_embeds);
      if (o.batch != 1 && o.batch != pos.batch)
        api::bad("--batch " + std::to_string(o.batch) + " but the prompt embeddings hold " + std::to_string(pos.batch) +
                 " prompts (the batch is theirs)");
      so.batch = pos.batch;
    } else {
      if (o.batch < 1 || o.batch > kMaxBatch) api::bad("--batch must be in [1, " + std::to_string(kMaxBatch) + "]");
      pos.batch = o.batch; pos.len = o.context_len; pos.dim = info.context_dim;
      pos.data = random_normal(size_t(pos.batch) * size_t(pos.len) * size_t(pos.dim), o.seed ^ 0x9e3779b97f4a7c15ull);
      random_text = true;
    }
    if (!o.negative_prompt_embeds.empty()) {
      neg = read_text_embeds(o.negative_prompt_embeds);
    } else {
      neg.batch = pos.batch; neg.len = pos.len; neg.dim = pos.dim;
      neg.data = random_normal(pos.data.size(), o.seed ^ 0xd1b54a32d192ed03ull);
    }
    so.prompt_embeds = {pos.data.data(), pos.batch, pos.len, pos.dim};
    so.negative_prompt_embeds = {neg.data.data(), neg.batch, neg.len, neg.dim};
  } else if (info.num_classes) {
    // Class-conditional: labels cycle over the classes (the null class excluded).
    std::vector<int32_t> classes;
    for (int c = 0; c < info.num_classes; ++c)
      if (c != info.null_class) classes.push_back(c);
    if (classes.empty()) fail(ErrorCode::InvalidModel, "class-conditional model without a non-null class");
    for (int i = 0; i < o.batch && o.batch <= kMaxBatch; ++i) so.class_labels.push_back(classes[size_t(i) % classes.size()]);
  }
  if (!text && !info.num_classes && so.guidance_scale > 1)
    api::bad("--guidance-scale > 1: this model has neither text nor class conditioning");

  api::Prepared p = api::prepare(model, so);
  api::fill_text_context(model, so, TextEncodeFn{}, p.job);
  WorkloadRequest q;
  q.sched = p.job.sched;
  q.scheduler_json = json::parse(p.description.scheduler_config);
  q.req = p.job.req;
  q.sampler = p.description.sampler;
  q.context = std::move(p.job.context);
  q.context_len = p.job.context_len;
  q.random_text = random_text;
  return make_workload(mf, q);
}

std::string device_name(Session& s) { return s.device() == Device::Cuda ? "cuda" : "cpu"; }

json environment_json(Session& s, const std::string& command) {
  json env = host_environment_json();
  env["date_utc"] = utc_now_iso();
  env["command"] = command;
  env["device"] = device_name(s);
#ifdef DIFFRT_HAVE_CUDA
  if (s.device() == Device::Cuda) env.update(cuda_environment_json(0));
#endif
  return env;
}

std::string file_stem(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

json model_json(const ModelFile& mf, const Identity& id) {
  uint64_t params = 0, bytes = 0;
  for (const TensorInfo& t : mf.tensors) {
    params += t.numel();
    bytes += t.nbytes;
  }
  return {{"path", id.model_path}, {"name", id.name.empty() ? file_stem(id.model_path) : id.name},
          {"family", mf.family}, {"dtype", dtype_name(mf.graph.dtype)},
          {"parameters", params}, {"tensor_bytes", bytes}, {"unet_nodes", mf.graph.nodes.size()},
          {"vae_nodes", mf.vae.present() ? mf.vae.graph.nodes.size() : 0}};
}

double p50(const std::vector<double>& v) { return v.empty() ? 0.0 : percentile(v, 0.5); }
json or_null(bool ok, double v) { return ok ? json(v) : json(nullptr); }
json or_null(bool ok, uint64_t v) { return ok ? json(v) : json(nullptr); }

engine::Backend& backend_of(Session& s) { return *SessionAccess::impl(s).backend; }

}  // namespace

json run_bench(Session& s, const BenchOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  if (o.warmup < 0 || o.warmup > 100000) api::bad("--warmup must be in [0, 100000]");
  if (o.repeat < 1 || o.repeat > 100000) api::bad("--repeat must be in [1, 100000]");
  if (o.vae_repeat < 1 || o.vae_repeat > 10000) api::bad("--vae-repeat must be in [1, 10000]");
  Session::Impl& impl = SessionAccess::impl(s);
  api::BusyScope busy(impl.busy);
  api::OmpThreadsScope threads(impl.options.threads);
  const ModelFile& mf = ModelAccess::file(s.model());
  const std::string device = device_name(s);
  const diffrt::Workload w = build_workload(s, o.workload);
  // Activation bytes per element: each graph's own dtype on CUDA (mixed precision per component); the CPU
  // computes in fp32.
  auto cost_es = [&](const Graph& g) { return device == "cpu" ? sizeof(float) : dtype_size(g.dtype); };
  const TensorBytes tb = tensor_bytes(mf);
  const TensorBytes* stored = device == "cpu" ? nullptr : &tb;  // the CPU widens the weights to fp32
  const GraphCost unet_cost = graph_cost(mf.graph, plan_memory(mf.graph, w.unet_in), cost_es(mf.graph), stored);
  GraphCost vae_cost;
  if (w.latent_model)
    vae_cost = graph_cost(mf.vae.graph, plan_memory(mf.vae.graph, w.vae_in), cost_es(mf.vae.graph), stored);

  diffrt::BenchOptions bo;
  bo.warmup = o.warmup;
  bo.repeat = o.repeat;
  bo.vae_repeat = o.vae_repeat;
  bo.eager = o.eager;
  bo.unet = o.unet;
  bo.vae = o.vae;
  const BenchResults r = backend_of(s).bench(w, bo);

  const double step_flops = unet_cost.flops;  // the scheduler step adds no FLOPs worth counting
  const double sp50 = p50(r.step_ms);
  json results = {{"step", timing_json(r.step_ms)}, {"step_eager", timing_json(r.step_eager_ms)},
                  {"run", timing_json(r.run_ms)}, {"unet", timing_json(r.unet_ms)},
                  {"unet_graph", timing_json(r.unet_graph_ms)}, {"vae_decode", timing_json(r.vae_ms)},
                  {"graph_used", r.graph_used}, {"graph_fallback", r.graph_fallback},
                  {"time_embeddings_precomputed", r.time_embeddings_precomputed}, {"sampler_runs", r.sampler_runs},
                  {"vae_finite", r.vae_finite}};
  auto tflops = [](double flops, const std::vector<double>& ms) -> json {
    return ms.empty() || p50(ms) <= 0 ? json(nullptr) : json(flops / (p50(ms) * 1e9));
  };
  const double b = w.req.batch;
  const bool have_step = sp50 > 0;
  json derived = {
      {"step_ms_p50", or_null(have_step, sp50)},
      {"step_tflops", tflops(step_flops, r.step_ms)},
      {"step_eager_tflops", tflops(step_flops, r.step_eager_ms)},
      {"unet_tflops", tflops(unet_cost.flops, r.unet_ms)},
      {"unet_graph_tflops", tflops(unet_cost.flops, r.unet_graph_ms)},
      {"vae_tflops", tflops(vae_cost.flops, r.vae_ms)},
      {"eager_over_graph", or_null(have_step && !r.step_eager_ms.empty(), p50(r.step_eager_ms) / sp50)},
      {"samples_per_s", or_null(have_step, b / (sp50 / 1e3))},
      {"images_per_s", or_null(have_step, b / (sp50 / 1e3 * w.req.steps))},
      {"images_per_s_with_vae", or_null(have_step && !r.vae_ms.empty(), b / ((sp50 * w.req.steps + p50(r.vae_ms)) / 1e3))}};
  json flops = {{"unet_call", unet_cost.flops}, {"step", step_flops},
                {"vae_decode", or_null(w.latent_model, vae_cost.flops)}, {"unet_by_op", unet_cost.flops_by_op},
                {"unet_min_bytes", unet_cost.bytes},
                {"counting", "conv, linear, attention matmuls, time MLP; 2 FLOPs per MAC (runtime/graph_cost.h)"}};
  if (w.latent_model) {
    flops["vae_by_op"] = vae_cost.flops_by_op;
    flops["vae_min_bytes"] = vae_cost.bytes;
  }
  const std::string name = o.id.name.empty() ? file_stem(o.id.model_path) : o.id.name;
  json out = {{"schema", "diffrt.bench.v1"}, {"name", name}, {"env", environment_json(s, o.id.command)},
              {"model", model_json(mf, o.id)}, {"workload", workload_json(w)},
              {"options", {{"warmup", o.warmup}, {"repeat", o.repeat}, {"vae_repeat", o.vae_repeat},
                           {"eager", o.eager}, {"unet", o.unet}, {"vae", o.vae}}},
              {"flops", flops}, {"results", results}, {"derived", derived},
              {"memory", {{"weights_bytes", r.weights_bytes}, {"unet_arena_bytes", r.unet_arena_bytes},
                          {"vae_arena_bytes", r.vae_arena_bytes},
                          {"peak_device_bytes", or_null(device == "cuda", r.peak_device_bytes)},
                          {"peak_host_rss_bytes", or_null(r.peak_host_rss_bytes > 0, r.peak_host_rss_bytes)}}},
              {"notes", r.notes}};
  out["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  out["complete"] = true;
  return out;
}

ProfileResult run_profile(Session& s, const ProfileOptions& o) {
  if (o.warmup < 0 || o.warmup > 1000) api::bad("--warmup must be in [0, 1000]");
  if (o.repeat < 1 || o.repeat > 1000) api::bad("--repeat must be in [1, 1000]");
  if (o.top < 0) api::bad("--top must be >= 0");
  Session::Impl& impl = SessionAccess::impl(s);
  api::BusyScope busy(impl.busy);
  api::OmpThreadsScope threads(impl.options.threads);
  const ModelFile& mf = ModelAccess::file(s.model());
  const diffrt::Workload w = build_workload(s, o.workload);
  const ProfileRun run = backend_of(s).profile(w, o.warmup, o.repeat, o.vae, s.device() == Device::Cuda && o.ceilings);
  ProfileResult res;
  json meta = {{"schema", "diffrt.profile.v1"}, {"env", environment_json(s, o.id.command)},
               {"model", model_json(mf, o.id)}, {"workload", workload_json(w)},
               {"options", {{"warmup", o.warmup}, {"repeat", o.repeat}}}};
  res.trace = chrome_trace(run.graphs, run.ceilings, meta);
  res.summary = meta;
  res.summary["summary"] = op_summary_json(run.graphs, run.ceilings);
  res.summary["ceilings"] = {{"copy_gbps", run.ceilings.copy_gbps}, {"gemm_tflops", run.ceilings.gemm_tflops}};
  json graphs = json::array();
  for (const ProfiledGraph& g : run.graphs)
    graphs.push_back({{"label", g.label}, {"nodes", g.graph->nodes.size()}, {"total_ms", g.total_us() / 1e3}});
  res.summary["graphs"] = graphs;
  res.table = op_summary_table(run.graphs, run.ceilings, o.top);
  return res;
}

}  // namespace diffrt::bench
