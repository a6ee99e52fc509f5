// GPU facts for benchmark results: device properties, CUDA runtime/driver, cuDNN and cuBLASLt versions, and the
// driver version, clocks, power limit and temperature from NVML (loaded with dlopen, so nothing links or needs
// libnvidia-ml; absent -> those fields are empty). Used by diffrt bench / profile and diffrt_kernel_bench.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace diffrt {

struct NvmlInfo {
  bool ok = false;
  std::string driver_version;
  unsigned sm_clock_mhz = 0, mem_clock_mhz = 0, max_sm_clock_mhz = 0, max_mem_clock_mhz = 0;
  unsigned power_limit_mw = 0, temperature_c = 0;
};
NvmlInfo query_nvml(int cuda_device);

// gpu, cc, sm_count, l2_bytes, global_mem_bytes, cuda_runtime, cuda_driver_api, driver, cudnn, cublaslt,
// sm/mem clocks now and max, power limit, temperature.
nlohmann::json cuda_environment_json(int cuda_device);

}  // namespace diffrt
