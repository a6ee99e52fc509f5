// What `diffrt bench` and `diffrt profile` run, independent of the backend: a validated sampling request (the
// API builds it from the command's options, as every sample request), random inputs for one UNet call and one
// VAE decode, and the measurements each backend returns. The backends are runtime/cpu_bench.h (std::chrono) and
// runtime/cuda/cuda_bench.h (CUDA events).
//
// Inputs are random: UNet sample N(0,1), timestep = the first of the schedule, VAE latents N(0,1) (the API adds
// random text embeddings unless files are given, and cycles class labels over the model's classes). Timings do not depend on the values (except fp16 overflow in a VAE, which is reported).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cpu_executor.h"
#include "model/model_file.h"
#include "runtime/graph_cost.h"
#include "runtime/sampler.h"
#include "runtime/schedule.h"

namespace diffrt {

// A validated sampling request to time (built by the API from its bench options: api/bench.cpp).
struct WorkloadRequest {
  SchedulerConfig sched;
  nlohmann::json scheduler_json;
  SampleRequest req;                 // batch, latent/pixel size, channels, guidance, labels, seed
  std::string sampler;               // the sampler's name, for the results
  std::vector<float> context;        // [model_batch, context_len, context_dim] (text models)
  int context_len = 0;
  bool random_text = false;          // the text embeddings are random, not the user's
};

struct Workload {
  SchedulerConfig sched;
  nlohmann::json scheduler_json;
  SampleRequest req;                 // batch, latent/pixel size, channels, guidance, labels, seed
  std::string sampler;               // the sampler's short name ("ddim", "dpmpp-2m", ...)
  bool text_model = false, latent_model = false, cfg = false;
  int img_h = 0, img_w = 0;          // pixels
  int vae_factor = 1;
  int model_batch = 0;               // UNet batch per step (2x batch with guidance)
  std::vector<float> context;        // [model_batch, context_len, context_dim] (text models)
  int context_len = 0;
  bool random_text = false;
  PlanInputs unet_in, vae_in;        // plan inputs of one UNet call / one VAE decode
  // One UNet call's host inputs (fp32; NHWC sample).
  std::vector<float> unet_sample, unet_timesteps, vae_latents;
  std::vector<int32_t> unet_labels;
  GraphInputs unet_inputs() const;
  GraphInputs vae_inputs() const;
};

// The workload of a request: the request plus random inputs for one UNet call (N(0,1) sample, the schedule's
// first timestep, the request's model-side labels) and one VAE decode (N(0,1) latents), seeded by the request.
Workload make_workload(const ModelFile& mf, const WorkloadRequest& q);

// n samples of N(0, 1) from a seeded generator (random text embeddings of a benchmark).
std::vector<float> random_normal(size_t n, uint64_t seed);

// JSON of the workload (batch, sizes, steps, sampler, guidance, context length, ...).
nlohmann::json workload_json(const Workload& w);

// What a backend measured. Vectors hold the timed samples in milliseconds; empty = not measured.
struct BenchResults {
  std::string device;                // "cuda" | "cpu"
  std::vector<double> step_ms;       // whole denoising steps as the sampler runs them (CUDA: graph replay)
  std::vector<double> step_eager_ms; // the same loop with the CUDA graph disabled (CUDA only)
  std::vector<double> run_ms;        // whole sampling loops (all steps), one per sampler run timed
  std::vector<double> unet_ms;       // one UNet call, eager launches
  std::vector<double> unet_graph_ms; // one UNet call replayed as a CUDA graph (CUDA only)
  std::vector<double> vae_ms;        // one VAE decode (latent models)
  int sampler_runs = 0;
  bool graph_used = false;
  std::string graph_fallback;
  bool time_embeddings_precomputed = false;
  bool vae_finite = true;            // the timed decode's output had no NaN/Inf (fp16 VAEs can overflow)
  uint64_t weights_bytes = 0, unet_arena_bytes = 0, vae_arena_bytes = 0;
  uint64_t peak_device_bytes = 0;    // CUDA: max (used - used before loading) seen while running; 0 on CPU
  uint64_t peak_host_rss_bytes = 0;  // CPU: peak resident set size of the process
  std::vector<std::string> notes;
};

struct BenchOptions {
  int warmup = 5;        // untimed steps / calls first
  int repeat = 50;       // timed steps / calls
  int vae_repeat = 10;   // timed VAE decodes (after 1 warm-up)
  bool eager = true;     // also time the loop without the CUDA graph
  bool unet = true;      // time the UNet alone
  bool vae = true;       // time the VAE decode (latent models)
};

// {n, p50_ms, p90_ms, p99_ms, min_ms, mean_ms, max_ms} of a sample; null when empty.
nlohmann::json timing_json(const std::vector<double>& ms);

// The tensor table of a model file (name -> stored bytes) for graph_cost.
TensorBytes tensor_bytes(const ModelFile& mf);

}  // namespace diffrt
