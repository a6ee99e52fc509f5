// A kernel that keeps the stream busy for a given time (diffrt profile): enqueued before a run of small
// launches, it lets the host queue them all while the GPU waits, so per-node CUDA-event timings measure the GPU
// work rather than the host's launch rate.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace diffrt::cuda_rt {

// One thread spins on %globaltimer until `ns` nanoseconds have passed (capped at 1 s). Asynchronous on `stream`.
void gpu_spin(uint64_t ns, cudaStream_t stream);

}  // namespace diffrt::cuda_rt
