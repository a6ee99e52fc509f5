// diffrt bench / profile on the CPU reference backend, timed with std::chrono (slow; it exists so the commands,
// their JSON and the trace format work and are tested without a GPU). Same results as the CUDA versions
// (runtime/cuda/cuda_bench.h) except that there is no CUDA graph (step_eager_ms and unet_graph_ms stay empty)
// and memory is the process's peak resident set size.
#pragma once
#include <vector>

#include "runtime/bench_workload.h"
#include "runtime/profile_trace.h"

namespace diffrt {

// Steps: ceil((warmup + repeat) / steps) sampler runs, each step timed from the progress callback; the first
// `warmup` steps are dropped. UNet: warmup + repeat calls. VAE: 1 + vae_repeat decodes.
BenchResults bench_cpu(const ModelFile& mf, const CpuWeights& weights, const Workload& w, const BenchOptions& o);

// One UNet call (and one VAE decode for latent models when `vae`) node by node: `warmup` untimed runs, then
// `repeats` timed runs; per-node median. Costs use fp32 element sizes (the CPU computes in fp32).
std::vector<ProfiledGraph> profile_cpu(const ModelFile& mf, const CpuWeights& weights, const Workload& w, int warmup,
                                       int repeats, bool vae);

}  // namespace diffrt
