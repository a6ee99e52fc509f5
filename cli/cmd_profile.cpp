// diffrt profile: one eager UNet call (and one VAE decode for latent models) node by node -- per-node time, bytes,
// FLOPs, achieved GB/s and TFLOP/s (against measured ceilings on the GPU) -- written as a Chrome/Perfetto trace,
// with a per-op summary on stderr. Measurement: runtime/cuda/cuda_bench.h (profile_cuda) and runtime/cpu_bench.h.
#include <cstdio>

#include "base/error.h"
#include "cli/bench_common.h"
#include "cli/commands.h"

namespace diffrt::cli {

void add_profile_command(CLI::App& app, const std::string& command) {
  struct Opts {
    bench::Workload w;
    std::string model, output, json, name, device = "auto";
    int warmup = 2, repeat = 5, top = 15, threads = 0;
    bool no_vae = false, no_ceilings = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "profile",
      "Profile one denoising step's UNet call (and a VAE decode for latent models) node by node: per-node time "
      "(CUDA events, eager launches; the per-node median of --repeat runs), bytes, FLOPs, GB/s and TFLOP/s, written "
      "as a Chrome trace (open in ui.perfetto.dev or chrome://tracing) with a per-op summary on stderr. For Nsight, "
      "every node and sampling step is also an NVTX range (domain \"diffrt\"): nsys profile diffrt sample ... "
      "See bench/README.md.");
  c->add_option("-m,--model", o->model, "model file (.drt)")->required();
  c->add_option("-o,--output", o->output, "Chrome trace JSON to write")->required();
  add_workload_options(c, o->w, "sampler steps (only picks the profiled timestep: the schedule's first)");
  c->add_option("--warmup", o->warmup, "untimed runs first (plans, algorithm search)")->capture_default_str();
  c->add_option("--repeat", o->repeat, "timed node-by-node runs (per-node median)")->capture_default_str();
  c->add_option("--top", o->top, "slowest nodes listed per graph in the summary")->capture_default_str();
  c->add_option("--json", o->json, "also write the per-op summary as JSON here");
  c->add_option("--name", o->name, "model name in the trace metadata (default: the file's stem)");
  c->add_flag("--no-vae", o->no_vae, "profile the UNet only");
  c->add_flag("--no-ceilings", o->no_ceilings,
              "CUDA: do not measure the copy-bandwidth and GEMM ceilings (no roofline fractions)");
  c->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  c->add_option("--device", o->device, "cuda, cpu or auto")->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  c->add_flag("-q,--quiet", o->quiet, "no per-op table or notices on stderr");
  c->callback([o, command]() {
    if (o->threads < 0) fail(ErrorCode::InvalidArgument, "--threads must be >= 0");
    if (o->warmup < 1 || o->warmup > 1000) fail(ErrorCode::InvalidArgument, "--warmup must be in [1, 1000]");
    const std::string device = resolve_device(o->device, o->quiet);
    Session session = open_session(Model::load(o->model), device, o->threads);
    bench::ProfileOptions p;
    p.workload = o->w;
    p.id = {o->model, o->name, command};
    p.warmup = o->warmup;
    p.repeat = o->repeat;
    p.vae = !o->no_vae;
    p.ceilings = !o->no_ceilings;
    p.top = o->top;
    const bench::ProfileResult r = bench::run_profile(session, p);
    write_json_file(o->output, r.trace);
    if (!o->quiet) {
      const nlohmann::json& c = r.summary["ceilings"];
      if (c["copy_gbps"].get<double>() > 0)
        std::fprintf(stderr, "ceilings: copy %.0f GB/s, GEMM %.1f TFLOP/s (model dtype)\n", c["copy_gbps"].get<double>(),
                     c["gemm_tflops"].get<double>());
      std::fprintf(stderr, "%swrote %s (open in ui.perfetto.dev or chrome://tracing)\n", r.table.c_str(), o->output.c_str());
    }
    if (!o->json.empty()) write_json_file(o->json, r.summary);
    for (const auto& g : r.summary["graphs"])
      std::printf("%s: %d nodes, %.3f ms\n", g["label"].get<std::string>().c_str(), g["nodes"].get<int>(),
                  g["total_ms"].get<double>());
  });
}

}  // namespace diffrt::cli
