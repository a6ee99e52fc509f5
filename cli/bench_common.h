// Options and output helpers shared by `diffrt bench` and `diffrt profile` (cmd_bench.cpp, cmd_profile.cpp).
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "runtime/bench_workload.h"
#include "model/model_file.h"
#include "runtime/profile_trace.h"

namespace diffrt::cli {

// The workload flags: -b, -H, -W, --steps, --sampler, --eta, --guidance-scale, --context-len, --prompt-embeds,
// --negative-prompt-embeds, --seed.
void add_workload_options(CLI::App* c, WorkloadOptions& o, const char* steps_help);

// {date_utc, command, device, host facts} plus the GPU facts when device == "cuda".
nlohmann::json environment_json(const std::string& device, const std::string& command);

// {path, name, family, dtype, parameters, tensor_bytes, unet_nodes, vae_nodes}.
nlohmann::json model_json(const ModelFile& mf, const std::string& path, const std::string& name);

// The stem of a path: "/x/sd15.drt" -> "sd15".
std::string file_stem(const std::string& path);

// Writes JSON text atomically (2-space indent); errors name the path.
void write_json_file(const std::string& path, const nlohmann::json& j);

struct ProfileRun {
  std::vector<ProfiledGraph> graphs;
  Ceilings ceilings;  // measured on CUDA when asked; zero otherwise
};

// The backend bench/profile run on: "cuda" (a CudaContext and the weights uploaded once, the device's used
// memory measured before the upload as the baseline of peak memory) or "cpu" (runtime/cpu_bench.h). `mf` must
// outlive it.
class BenchBackend {
 public:
  BenchBackend(const std::string& device, const ModelFile& mf);
  ~BenchBackend();
  BenchBackend(const BenchBackend&) = delete;
  BenchBackend& operator=(const BenchBackend&) = delete;

  BenchResults bench(const Workload& w, const BenchOptions& o);
  ProfileRun profile(const Workload& w, int warmup, int repeats, bool vae, bool ceilings);
  const std::string& device() const { return device_; }

 private:
  struct Cuda;
  std::string device_;
  const ModelFile& mf_;
  std::unique_ptr<Cuda> cuda_;
};

// Writes the trace (and prints the op summary to stderr unless quiet); returns the summary JSON.
nlohmann::json write_trace(const std::string& path, const ProfileRun& run, const nlohmann::json& meta, int top,
                           bool quiet);

}  // namespace diffrt::cli
