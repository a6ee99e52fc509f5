// Benchmark and profiling hooks of the C++ API, for the front ends `diffrt bench` and `diffrt profile` (and for
// embedders measuring their own deployment): they run the runtime's measurement workloads on a Session's backend
// with the model's shared weights and return JSON documents (schemas in bench/README.md). What is measured:
//  * run_bench: whole denoising steps as the sampler runs them (CUDA: one graph per step replayed, CUDA events;
//    CPU: std::chrono), the same loop launched eagerly, one UNet call alone, one VAE decode, peak memory, and
//    achieved TFLOP/s from the graph's FLOP count; schema diffrt.bench.v1.
//  * run_profile: one UNet call (and one VAE decode) node by node, as a Chrome/Perfetto trace with bytes, FLOPs,
//    GB/s and TFLOP/s per node (against measured copy/GEMM ceilings on the GPU), plus a per-op summary.
// Inputs are random (text embeddings too, unless files are given). The session must not be busy.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "api/diffrt.hpp"

namespace diffrt::bench {

// The sampling request a benchmark times (as `diffrt sample` would build it).
struct Workload {
  int batch = 1;                 // images
  int height = 0, width = 0;     // pixels (0: the model's default size)
  int steps = 50;                // sampler steps per run
  std::string sampler;           // "" = the model's; any SampleOptions::sampler name
  bool karras = false;           // Karras sigmas (SampleOptions::karras)
  double eta = 0.0;
  double guidance_scale = -1.0;  // < 0: the model's default (7.5 text-conditioned, else 1)
  int context_len = 77;          // tokens of the random text embeddings
  std::string prompt_embeds, negative_prompt_embeds;  // .npy [B, L, D]; random when empty
  uint64_t seed = 0;
};

// Identifies a result: the model file, a short name, the exact command line.
struct Identity {
  std::string model_path, name, command;
};

struct BenchOptions {
  Workload workload;
  Identity id;
  int warmup = 5;        // untimed steps / calls first
  int repeat = 50;       // timed steps / calls
  int vae_repeat = 10;   // timed VAE decodes (after 1 warm-up)
  bool eager = true;     // also time the loop without the CUDA graph
  bool unet = true;      // time the UNet alone
  bool vae = true;       // time the VAE decode (latent models)
};

struct ProfileOptions {
  Workload workload;
  Identity id;
  int warmup = 2;        // untimed runs (plans, algorithm search)
  int repeat = 5;        // timed node-by-node runs (per-node median)
  bool vae = true;       // also the VAE decode (latent models)
  bool ceilings = true;  // CUDA: measure copy bandwidth and GEMM rate for roofline fractions
  int top = 15;          // slowest nodes listed per graph in the text summary
};

struct ProfileResult {
  nlohmann::json trace;    // Chrome trace event document (open in ui.perfetto.dev or chrome://tracing)
  nlohmann::json summary;  // schema diffrt.profile.v1: env, model, workload, options, per-op summary, ceilings
  std::string table;       // the per-op summary as text
};

// schema diffrt.bench.v1 (bench/README.md): env (GPU, driver, CUDA, clocks, host, date, command), model,
// workload, options, flops, results (timings with n/p50/p90/p99/min/mean/max), derived, memory, notes.
nlohmann::json run_bench(Session& session, const BenchOptions& o);
ProfileResult run_profile(Session& session, const ProfileOptions& o);

}  // namespace diffrt::bench
