// NVTX3 ranges for Nsight Systems / Nsight Compute timelines (header-only NVTX v3 from the CUDA toolkit). Every
// graph node the CUDA executor enqueues and every sampling step the CUDA sampler launches is wrapped in a range of
// the "diffrt" domain, so `nsys profile diffrt sample ...` shows node names and step numbers next to the kernels.
// Kept in release builds: with no tool attached, NVTX calls go to a no-op stub (a function-pointer call each).
// A range is a host-side interval: under CUDA-graph replay it covers the launch, and nsys links it to the GPU work.
#pragma once
#include <nvtx3/nvtx3.hpp>

namespace diffrt::nvtx {

struct Domain {
  static constexpr const char* name{"diffrt"};
};

// RAII range: nvtx::Range r{"message"};
using Range = nvtx3::scoped_range_in<Domain>;

}  // namespace diffrt::nvtx
