// Kernel attributes set once per kernel and device, not per launch.
//
// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) is process-wide driver state of one
// function on one device: setting it on every launch costs a driver call each time for nothing. The helper
// below remembers the largest limit it set per (kernel, device) and calls the driver only when a launch needs
// more. The cache mirrors driver state (it carries no session state), is guarded by a mutex, and is safe
// from any number of threads and sessions.
// The opt-in shared memory per block of a device is queried once per device and cached the same way.
// Users: timestep_embedding.cu, attention.cu.
#pragma once
#include <cstddef>

namespace diffrt {

// Makes `kernel` (a __global__ function's address) accept at least `bytes` of dynamic shared memory on the
// current device. No-op for bytes <= 48 KiB (the default limit). Throws Error(Cuda) when the driver refuses.
void ensure_dynamic_smem(const void* kernel, size_t bytes);

// The number of cudaFuncSetAttribute calls ensure_dynamic_smem has made in this process (tests check that a
// second launch of the same shape makes none).
size_t dynamic_smem_attribute_calls();

// The current device's opt-in limit of dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin),
// queried once per device. Throws Error(Cuda) when the query fails.
size_t device_smem_optin();

}  // namespace diffrt
