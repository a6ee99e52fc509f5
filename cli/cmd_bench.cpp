// diffrt bench: per-step latency of the sampling loop as it runs (CUDA-graph replay on the GPU), plus eager steps,
// the UNet alone, the VAE decode, peak memory and achieved TFLOP/s; a table on stdout and JSON
// (schema diffrt.bench.v1, bench/README.md) with --json. The measurements are the API's bench hooks
// (api/diffrt_bench.hpp); this file parses the flags and prints the document.
#include <cstdint>
#include <cstdio>

#include "base/error.h"
#include "cli/bench_common.h"
#include "cli/commands.h"

namespace diffrt::cli {

namespace {

struct BenchOpts {
  bench::BenchOptions b;
  std::string model, json, trace, name, device = "auto";
  bool no_eager = false, no_unet = false, no_vae = false, quiet = false;
  int threads = 0, trace_repeat = 3, top = 10;
};

// One row of the table from a timing object {n, p50_ms, p90_ms, min_ms, ...} (null: not measured).
void print_row(const char* what, const nlohmann::json& t, const nlohmann::json& tflops) {
  if (!t.is_object()) return;
  std::printf("  %-28s p50 %9.3f ms  p90 %9.3f  min %9.3f  (n %d)", what, t["p50_ms"].get<double>(),
              t["p90_ms"].get<double>(), t["min_ms"].get<double>(), t["n"].get<int>());
  if (tflops.is_number()) std::printf("  %7.2f TFLOP/s", tflops.get<double>());
  std::printf("\n");
}

void print_report(const nlohmann::json& out) {
  const nlohmann::json &env = out["env"], &w = out["workload"], &r = out["results"], &d = out["derived"];
  const nlohmann::json &f = out["flops"], &m = out["memory"];
  const std::string device = env["device"];
  std::string gpu = env.contains("gpu") && env["gpu"].is_string() ? ": " + env["gpu"].get<std::string>() : "";
  std::string cfg = w["cfg"].get<bool>() ? ", CFG " + std::to_string(w["guidance_scale"].get<double>()).substr(0, 4) +
                                               " (UNet batch " + std::to_string(w["model_batch"].get<int>()) + ")"
                                         : "";
  std::string text = w["text_conditioned"].get<bool>() ? ", " + std::to_string(w["context_len"].get<int>()) + " tokens" : "";
  std::printf("diffrt bench: %s (%s, %s%s) %dx%d, batch %d%s, %s %d steps%s\n", out["name"].get<std::string>().c_str(),
              out["model"]["dtype"].get<std::string>().c_str(), device.c_str(), gpu.c_str(), w["width"].get<int>(),
              w["height"].get<int>(), w["batch"].get<int>(), cfg.c_str(), w["sampler"].get<std::string>().c_str(),
              w["steps"].get<int>(), text.c_str());
  std::printf("  FLOPs: UNet call %.4g GFLOP", f["unet_call"].get<double>() / 1e9);
  if (f["vae_decode"].is_number()) std::printf(", VAE decode %.4g GFLOP", f["vae_decode"].get<double>() / 1e9);
  std::printf("\n");
  print_row(device == "cpu" ? "step (sampler loop)" : r["graph_used"].get<bool>() ? "step (graph replay)" : "step (eager fallback)",
            r["step"], d["step_tflops"]);
  print_row("step (eager launches)", r["step_eager"], d["step_eager_tflops"]);
  print_row("UNet call (eager)", r["unet"], d["unet_tflops"]);
  print_row("UNet call (graph)", r["unet_graph"], d["unet_graph_tflops"]);
  print_row("VAE decode", r["vae_decode"], d["vae_tflops"]);
  if (r["run"].is_object())
    std::printf("  whole loop (%d steps): p50 %.3f ms -> %.3f images/s%s\n", w["steps"].get<int>(),
                r["run"]["p50_ms"].get<double>(), w["batch"].get<int>() / (r["run"]["p50_ms"].get<double>() / 1e3),
                w["latent_model"].get<bool>() ? " (without the VAE decode)" : "");
  if (m["peak_device_bytes"].is_number() && m["peak_device_bytes"].get<uint64_t>())
    std::printf("  peak device memory: %.1f MiB (weights %.1f MiB, UNet arena %.1f MiB, VAE arena %.1f MiB)\n",
                m["peak_device_bytes"].get<double>() / 1048576.0, m["weights_bytes"].get<double>() / 1048576.0,
                m["unet_arena_bytes"].get<double>() / 1048576.0, m["vae_arena_bytes"].get<double>() / 1048576.0);
  if (m["peak_host_rss_bytes"].is_number())
    std::printf("  peak host RSS: %.1f MiB\n", m["peak_host_rss_bytes"].get<double>() / 1048576.0);
  for (const auto& n : out["notes"]) std::printf("  note: %s\n", n.get<std::string>().c_str());
  std::fflush(stdout);
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
  add_workload_options(c, o->b.workload, "sampler steps per run (per-step latency does not depend on it; runs repeat until "
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
    if (o->threads < 0) fail(ErrorCode::InvalidArgument, "--threads must be >= 0");
    if (o->trace_repeat < 1 || o->trace_repeat > 1000)
      fail(ErrorCode::InvalidArgument, "--trace-repeat must be in [1, 1000]");
    o->b.eager = !o->no_eager;
    o->b.unet = !o->no_unet;
    o->b.vae = !o->no_vae;
    o->b.id = {o->model, o->name, command};
    const std::string device = resolve_device(o->device, o->quiet);
    Session session = open_session(Model::load(o->model), device, o->threads);
    nlohmann::json out = bench::run_bench(session, o->b);
    print_report(out);
    if (!o->trace.empty()) {
      bench::ProfileOptions p;
      p.workload = o->b.workload;
      p.id = o->b.id;
      p.warmup = 1;
      p.repeat = o->trace_repeat;
      p.vae = o->b.vae;
      p.top = o->top;
      const bench::ProfileResult pr = bench::run_profile(session, p);
      write_json_file(o->trace, pr.trace);
      if (!o->quiet) std::fprintf(stderr, "%swrote %s (open in ui.perfetto.dev or chrome://tracing)\n", pr.table.c_str(),
                                  o->trace.c_str());
      out["profile"] = pr.summary["summary"];
      out["trace"] = o->trace;
    }
    if (!o->json.empty()) {
      write_json_file(o->json, out);
      if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->json.c_str());
    }
  });
}

}  // namespace diffrt::cli
