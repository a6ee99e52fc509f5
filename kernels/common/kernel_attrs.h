// Kernel attributes set once per kernel and device, not per launch.
//
// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) is process-wide driver state of one
// function on one device: setting it on every launch costs a driver call each time for nothing. The helper
// below remembers the largest limit it set per (kernel, device) and calls the driver only when a launch needs
// more. The cache mirrors driver state (it carries no session state), is guarded by a mutex, and is safe
// from any number of threads and sessions.
// Users: timestep_embedding.cu. attention.cu still calls cudaFuncSetAttribute on every launch of its large-tile
// kernels; it moves here with the attention work of issue 16 item 2 (tile choice from the opt-in limit).
#pragma once
#include <cstddef>

namespace diffrt {

// Makes `kernel` (a __global__ function's address) accept at least `bytes` of dynamic shared memory on the
// current device. No-op for bytes <= 48 KiB (the default limit). Throws Error(Cuda) when the driver refuses.
void ensure_dynamic_smem(const void* kernel, size_t bytes);

// The number of cudaFuncSetAttribute calls ensure_dynamic_smem has made in this process (tests check that a
// second launch of the same shape makes none).
size_t dynamic_smem_attribute_calls();

}  // namespace diffrt
