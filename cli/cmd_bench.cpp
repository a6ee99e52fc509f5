// diffrt bench: per-step latency of the sampling loop as it runs (CUDA-graph replay on the GPU), plus eager steps,
// the UNet alone, the VAE decode, peak memory and achieved TFLOP/s; a table on stdout and JSON
// (schema diffrt.bench.v1, bench/README.md) with --json. The measurements are runtime/cuda/cuda_bench.h (CUDA
// events) and runtime/cpu_bench.h (std::chrono).
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>

#include "base/error.h"
#include "cli/bench_common.h"
#include "cli/commands.h"
#include "runtime/graph_cost.h"

namespace diffrt::cli {

namespace {

struct BenchOpts {
  WorkloadOptions w;
  BenchOptions b;
  std::string model, json, trace, name, device = "auto";
  bool no_eager = false, no_unet = false, no_vae = false, quiet = false;
  int threads = 0, trace_repeat = 3, top = 10;
};

double p50(const std::vector<double>& v) { return v.empty() ? 0.0 : percentile(v, 0.5); }
nlohmann::json or_null(bool ok, double v) { return ok ? nlohmann::json(v) : nlohmann::json(nullptr); }
nlohmann::json or_null(bool ok, uint64_t v) { return ok ? nlohmann::json(v) : nlohmann::json(nullptr); }

void print_row(const char* what, const std::vector<double>& ms, double flops) {
  if (ms.empty()) return;
  const double m = p50(ms);
  std::printf("  %-28s p50 %9.3f ms  p90 %9.3f  min %9.3f  (n %zu)", what, m, percentile(ms, 0.9),
              percentile(ms, 0.0), ms.size());
  if (flops > 0 && m > 0) std::printf("  %7.2f TFLOP/s", flops / (m * 1e9));
  std::printf("\n");
}

}  // namespace

void add_bench_command(CLI::App& app, const std::string& command) {
  auto o = std::make_shared<BenchOpts>();
  CLI::App* c = app.add_subcommand(
      "bench",
      "Benchmark sampling: per-step latency (p50/p90/min, CUDA events after warm-up) of whole denoising steps as the "
      "sampler runs them (UNet + fused scheduler step, one CUDA graph per step replayed), the same steps launched "
      "eagerly, one UNet call alone (eager and graph), one VAE decode for latent models, peak device memory and "
      "achieved TFLOP/s from the graph's FLOP count; the JSON also records the GPU, driver, CUDA version, clocks, date "
      "and the command. Inputs are random (text embeddings too, unless given). "
      "--device cpu measures the same with std::chrono (slow; for testing). See bench/README.md.");
  c->add_option("-m,--model", o->model, "model file (.drt)")->required();
  add_workload_options(c, o->w, "sampler steps per run (per-step latency does not depend on it; runs repeat until "
                                "warm-up + repeat steps are timed)");
  c->add_option("--warmup", o->b.warmup, "untimed steps (and UNet calls) before the timed ones")->capture_default_str();
  c->add_option("--repeat", o->b.repeat, "timed steps (and timed UNet calls)")->capture_default_str();
  c->add_option("--vae-repeat", o->b.vae_repeat, "timed VAE decodes (after one untimed)")->capture_default_str();
  c->add_flag("--no-eager", o->no_eager, "skip the eager (no CUDA graph) sampler run");
  c->add_flag("--no-unet", o->no_unet, "skip timing the UNet alone");
  c->add_flag("--no-vae", o->no_vae, "skip timing the VAE decode");
  c->add_option("--json", o->json, "write the results as JSON (schema diffrt.bench.v1) to this file");
  c->add_option("--trace", o->trace,
                "also profile one UNet call (and VAE decode) node by node, as `diffrt profile`, and write the Chrome "
                "trace here (saves a second process's weight upload and algorithm search)");
  c->add_option("--trace-repeat", o->trace_repeat, "--trace: timed node-by-node runs (per-node median)")
      ->capture_default_str();
  c->add_option("--name", o->name, "model name in the results (default: the file's stem), e.g. sd15");
  c->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  c->add_option("--device", o->device, "cuda, cpu or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no notices or per-op table on stderr (the results table is still printed)");
  c->callback([o, command]() {
    const auto t_start = std::chrono::steady_clock::now();
    if (o->threads < 0) fail(ErrorCode::InvalidArgument, "--threads must be >= 0");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    if (o->b.warmup < 0 || o->b.warmup > 100000) fail(ErrorCode::InvalidArgument, "--warmup must be in [0, 100000]");
    if (o->b.repeat < 1 || o->b.repeat > 100000) fail(ErrorCode::InvalidArgument, "--repeat must be in [1, 100000]");
    if (o->b.vae_repeat < 1 || o->b.vae_repeat > 10000)
      fail(ErrorCode::InvalidArgument, "--vae-repeat must be in [1, 10000]");
    if (o->trace_repeat < 1 || o->trace_repeat > 1000)
      fail(ErrorCode::InvalidArgument, "--trace-repeat must be in [1, 1000]");
    o->b.eager = !o->no_eager;
    o->b.unet = !o->no_unet;
    o->b.vae = !o->no_vae;
    const std::string device = resolve_device(o->device, o->quiet);
    ModelFile mf = read_model_file(o->model);
    const std::string name = o->name.empty() ? file_stem(o->model) : o->name;
    const Workload w = make_workload(mf, o->w);
    const size_t es = mf.tensors.empty() ? 4 : dtype_size(mf.tensors.front().dtype);
    const size_t cost_es = device == "cpu" ? sizeof(float) : es;  // the CPU computes in fp32
    const TensorBytes tb = tensor_bytes(mf);
    const TensorBytes* stored = device == "cpu" ? nullptr : &tb;  // the CPU widens the weights to fp32
    const GraphCost unet_cost = graph_cost(mf.graph, plan_memory(mf.graph, w.unet_in), cost_es, stored);
    GraphCost vae_cost;
    if (w.latent_model) vae_cost = graph_cost(mf.vae.graph, plan_memory(mf.vae.graph, w.vae_in), cost_es, stored);

    BenchBackend backend(device, mf);
    const BenchResults r = backend.bench(w, o->b);

    // ---- report ----
    const nlohmann::json env = environment_json(device, command);
    const double step_flops = unet_cost.flops;  // the scheduler step adds no FLOPs worth counting
    const double sp50 = p50(r.step_ms);
    std::printf("diffrt bench: %s (%s, %s%s) %dx%d, batch %d%s, %s %d steps%s\n", name.c_str(),
                model_json(mf, o->model, name)["dtype"].get<std::string>().c_str(), device.c_str(),
                env.contains("gpu") && env["gpu"].is_string() ? (": " + env["gpu"].get<std::string>()).c_str() : "",
                w.img_w, w.img_h, w.req.batch,
                w.cfg ? (", CFG " + std::to_string(w.req.guidance_scale).substr(0, 4) + " (UNet batch " +
                         std::to_string(w.model_batch) + ")").c_str() : "",
                w.sampler.c_str(), w.req.steps,
                w.text_model ? (", " + std::to_string(w.context_len) + " tokens").c_str() : "");
    std::printf("  FLOPs: UNet call %.4g GFLOP", unet_cost.flops / 1e9);
    if (w.latent_model) std::printf(", VAE decode %.4g GFLOP", vae_cost.flops / 1e9);
    std::printf("\n");
    print_row(device == "cpu" ? "step (sampler loop)" : r.graph_used ? "step (graph replay)" : "step (eager fallback)",
              r.step_ms, step_flops);
    print_row("step (eager launches)", r.step_eager_ms, step_flops);
    print_row("UNet call (eager)", r.unet_ms, unet_cost.flops);
    print_row("UNet call (graph)", r.unet_graph_ms, unet_cost.flops);
    print_row("VAE decode", r.vae_ms, vae_cost.flops);
    if (!r.run_ms.empty())
      std::printf("  whole loop (%d steps): p50 %.3f ms -> %.3f images/s%s\n", w.req.steps, p50(r.run_ms),
                  w.req.batch / (p50(r.run_ms) / 1e3), w.latent_model ? " (without the VAE decode)" : "");
    if (r.peak_device_bytes)
      std::printf("  peak device memory: %.1f MiB (weights %.1f MiB, UNet arena %.1f MiB, VAE arena %.1f MiB)\n",
                  r.peak_device_bytes / 1048576.0, r.weights_bytes / 1048576.0, r.unet_arena_bytes / 1048576.0,
                  r.vae_arena_bytes / 1048576.0);
    if (r.peak_host_rss_bytes) std::printf("  peak host RSS: %.1f MiB\n", r.peak_host_rss_bytes / 1048576.0);
    for (const std::string& n : r.notes) std::printf("  note: %s\n", n.c_str());
    std::fflush(stdout);

    nlohmann::json results = {
        {"step", timing_json(r.step_ms)}, {"step_eager", timing_json(r.step_eager_ms)},
        {"run", timing_json(r.run_ms)}, {"unet", timing_json(r.unet_ms)}, {"unet_graph", timing_json(r.unet_graph_ms)},
        {"vae_decode", timing_json(r.vae_ms)}, {"graph_used", r.graph_used}, {"graph_fallback", r.graph_fallback},
        {"time_embeddings_precomputed", r.time_embeddings_precomputed}, {"sampler_runs", r.sampler_runs},
        {"vae_finite", r.vae_finite}};
    auto tflops = [](double flops, const std::vector<double>& ms) -> nlohmann::json {
      return ms.empty() || p50(ms) <= 0 ? nlohmann::json(nullptr) : nlohmann::json(flops / (p50(ms) * 1e9));
    };
    const double b = w.req.batch;
    const bool have_step = sp50 > 0;
    nlohmann::json derived = {
        {"step_ms_p50", or_null(have_step, sp50)},
        {"step_tflops", tflops(step_flops, r.step_ms)},
        {"step_eager_tflops", tflops(step_flops, r.step_eager_ms)},
        {"unet_tflops", tflops(unet_cost.flops, r.unet_ms)},
        {"unet_graph_tflops", tflops(unet_cost.flops, r.unet_graph_ms)},
        {"vae_tflops", tflops(vae_cost.flops, r.vae_ms)},
        {"eager_over_graph", or_null(have_step && !r.step_eager_ms.empty(), p50(r.step_eager_ms) / sp50)},
        {"samples_per_s", or_null(have_step, b / (sp50 / 1e3))},
        {"images_per_s", or_null(have_step, b / (sp50 / 1e3 * w.req.steps))},
        {"images_per_s_with_vae",
         or_null(have_step && !r.vae_ms.empty(), b / ((sp50 * w.req.steps + p50(r.vae_ms)) / 1e3))}};
    nlohmann::json flops = {
        {"unet_call", unet_cost.flops}, {"step", step_flops}, {"vae_decode", or_null(w.latent_model, vae_cost.flops)},
        {"unet_by_op", unet_cost.flops_by_op}, {"unet_min_bytes", unet_cost.bytes},
        {"counting", "conv, linear, attention matmuls, time MLP; 2 FLOPs per MAC (runtime/graph_cost.h)"}};
    if (w.latent_model) {
      flops["vae_by_op"] = vae_cost.flops_by_op;
      flops["vae_min_bytes"] = vae_cost.bytes;
    }
    nlohmann::json out = {
        {"schema", "diffrt.bench.v1"}, {"name", name}, {"env", env}, {"model", model_json(mf, o->model, name)},
        {"workload", workload_json(w)},
        {"options", {{"warmup", o->b.warmup}, {"repeat", o->b.repeat}, {"vae_repeat", o->b.vae_repeat},
                     {"eager", o->b.eager}, {"unet", o->b.unet}, {"vae", o->b.vae}}},
        {"flops", flops}, {"results", results}, {"derived", derived},
        {"memory", {{"weights_bytes", r.weights_bytes}, {"unet_arena_bytes", r.unet_arena_bytes},
                    {"vae_arena_bytes", r.vae_arena_bytes},
                    {"peak_device_bytes", or_null(device == "cuda", r.peak_device_bytes)},
                    {"peak_host_rss_bytes", or_null(r.peak_host_rss_bytes > 0, r.peak_host_rss_bytes)}}},
        {"notes", r.notes}};

    if (!o->trace.empty()) {
      const ProfileRun run = backend.profile(w, 1, o->trace_repeat, o->b.vae, device == "cuda");
      nlohmann::json meta = {{"env", env}, {"model", model_json(mf, o->model, name)}, {"workload", workload_json(w)}};
      out["profile"] = write_trace(o->trace, run, meta, o->top, o->quiet);
      out["trace"] = o->trace;
    }
    out["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    out["complete"] = true;
    if (!o->json.empty()) {
      write_json_file(o->json, out);
      if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->json.c_str());
    }
  });
}

}  // namespace diffrt::cli
