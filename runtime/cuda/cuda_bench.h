// diffrt bench / profile on the CUDA backend (the CPU versions are runtime/cpu_bench.h; what is measured is
// described in bench/README.md "diffrt bench" and "diffrt profile").
//
// bench_cuda, all timed with CUDA events on the context's stream, after warm-up:
//  * step_ms: whole denoising steps exactly as run_sampler_cuda runs them (one CUDA graph per step replayed,
//    step index in device memory, fused scheduler step): ceil((warmup + repeat) / steps) sampler runs with
//    CudaSamplerOptions::timing, the first `warmup` steps dropped; run_ms = each run's whole loop;
//  * step_eager_ms: the same with the graph disabled (every node launched from the host each step);
//  * unet_ms / unet_graph_ms: one UNet call (the step's model batch) launched eagerly / replayed as a CUDA graph,
//    back to back (the end of call i-1 to the end of call i);
//  * vae_ms: one VAE decode (eager), after one warm-up; vae_finite says whether its output was finite;
//  * memory: weights bytes, arena bytes, and the peak of cudaMemGetInfo's used memory minus `baseline_used`
//    (the caller measures it before loading the weights), sampled after every sampler run and executor run.
// profile_cuda: one UNet call (and one VAE decode) node by node: `warmup` eager runs, one calibration run that
// measures how long the host takes to enqueue each chunk of 128 nodes, then `repeats` runs in which every chunk
// is preceded by a gpu_spin kernel lasting about twice that, so all launches of the chunk are queued before the
// GPU reaches them and each node's event-to-event time is its GPU time (plus the ~1 us gap between kernels),
// not the host's launch rate. Per-node median over the repeats.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/bench_workload.h"
#include "runtime/cuda/cuda_executor.h"
#include "runtime/profile_trace.h"

namespace diffrt {

// cudaMemGetInfo: total - free on the current device.
uint64_t device_used_bytes();

BenchResults bench_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx, const Workload& w,
                        const BenchOptions& o, uint64_t baseline_used);

std::vector<ProfiledGraph> profile_cuda(const ModelFile& mf, const CudaWeights& weights, CudaContext& ctx,
                                        const Workload& w, int warmup, int repeats, bool vae);

// The machine's measured ceilings: device-to-device copy of 512 MiB (GB/s counts read + write) and a cuBLASLt
// GEMM 8192^3 in `dtype` (fp32: no TF32 unless the context allows it), best of 5 after a warm-up.
Ceilings measure_ceilings(CudaContext& ctx, DType dtype);

}  // namespace diffrt
