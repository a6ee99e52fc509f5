// Kernel attributes set once per kernel and device (contract in kernel_attrs.h).
// Test: tests/gpu/timestep_embedding_test.cpp and tests/gpu/attention_test.cpp (a repeated large-smem launch makes
// no further attribute call).
#include "kernels/common/kernel_attrs.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <map>
#include <mutex>
#include <utility>

#include "kernels/common/cuda_check.h"

namespace diffrt {
namespace {

constexpr size_t kDefaultDynamicSmem = 48 * 1024;

struct AttrCache {
  std::mutex mu;
  std::map<std::pair<const void*, int>, size_t> limit;  // (kernel, device) -> largest limit set
  std::atomic<size_t> calls{0};
  std::map<int, size_t> optin;  // device -> cudaDevAttrMaxSharedMemoryPerBlockOptin
};

AttrCache& cache() {
  static AttrCache* c = new AttrCache;  // never destroyed: launches may run during static destruction
  return *c;
}

}  // namespace

void ensure_dynamic_smem(const void* kernel, size_t bytes) {
  if (bytes <= kDefaultDynamicSmem) return;
  int device = 0;
  DIFFRT_CUDA_CHECK(cudaGetDevice(&device));
  AttrCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  size_t& cur = c.limit[{kernel, device}];
  if (cur >= bytes) return;
  DIFFRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  c.calls.fetch_add(1, std::memory_order_relaxed);
  cur = bytes;
}

size_t dynamic_smem_attribute_calls() { return cache().calls.load(std::memory_order_relaxed); }

size_t device_smem_optin() {
  int device = 0;
  DIFFRT_CUDA_CHECK(cudaGetDevice(&device));
  AttrCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.optin.find(device);
  if (it != c.optin.end()) return it->second;
  int bytes = 0;
  DIFFRT_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  c.optin.emplace(device, size_t(bytes));
  return size_t(bytes);
}

}  // namespace diffrt
