// GPU environment facts (contracts in cuda_env.h).
#include "runtime/cuda/cuda_env.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <dlfcn.h>

namespace diffrt {

NvmlInfo query_nvml(int cuda_device) {
  NvmlInfo info;
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return info;
  using InitFn = int (*)();
  using DrvFn = int (*)(char*, unsigned);
  using HandleFn = int (*)(const char*, void**);
  using ClockFn = int (*)(void*, int, unsigned*);
  using UIntFn = int (*)(void*, unsigned*);
  using TempFn = int (*)(void*, int, unsigned*);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "nvmlInit_v2"));
  auto drv = reinterpret_cast<DrvFn>(dlsym(lib, "nvmlSystemGetDriverVersion"));
  auto by_pci = reinterpret_cast<HandleFn>(dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2"));
  auto clock = reinterpret_cast<ClockFn>(dlsym(lib, "nvmlDeviceGetClockInfo"));
  auto max_clock = reinterpret_cast<ClockFn>(dlsym(lib, "nvmlDeviceGetMaxClockInfo"));
  auto power = reinterpret_cast<UIntFn>(dlsym(lib, "nvmlDeviceGetPowerManagementLimit"));
  auto temp = reinterpret_cast<TempFn>(dlsym(lib, "nvmlDeviceGetTemperature"));
  if (!init || init() != 0) return info;  // the library stays loaded: harmless for a benchmark process
  char buf[96] = {0};
  if (drv && drv(buf, sizeof(buf)) == 0) info.driver_version = buf;
  char pci[32] = {0};
  void* dev = nullptr;
  if (cudaDeviceGetPCIBusId(pci, sizeof(pci), cuda_device) == cudaSuccess && by_pci && by_pci(pci, &dev) == 0) {
    // NVML clock types: 0 graphics, 1 SM, 2 memory.
    if (clock) { clock(dev, 1, &info.sm_clock_mhz); clock(dev, 2, &info.mem_clock_mhz); }
    if (max_clock) { max_clock(dev, 1, &info.max_sm_clock_mhz); max_clock(dev, 2, &info.max_mem_clock_mhz); }
    if (power) power(dev, &info.power_limit_mw);
    if (temp) temp(dev, 0, &info.temperature_c);
  } else {
    (void)cudaGetLastError();
  }
  info.ok = true;
  return info;
}

nlohmann::json cuda_environment_json(int dev) {
  nlohmann::json env;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return {{"gpu", nullptr}};
  }
  int rt = 0, drv = 0, clk = 0, mclk = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev);
  cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, dev);
  (void)cudaGetLastError();
  const NvmlInfo nv = query_nvml(dev);
  env = {{"gpu", prop.name}, {"cc", std::to_string(prop.major) + "." + std::to_string(prop.minor)},
         {"sm_count", prop.multiProcessorCount}, {"l2_bytes", prop.l2CacheSize},
         {"global_mem_bytes", prop.totalGlobalMem}, {"cuda_runtime", rt}, {"cuda_driver_api", drv},
         {"driver", nv.driver_version}, {"cudnn", cudnnGetVersion()}, {"cublaslt", cublasLtGetVersion()},
         {"max_sm_clock_mhz_attr", clk / 1000}, {"max_mem_clock_mhz_attr", mclk / 1000}, {"nvml", nv.ok},
         {"sm_clock_mhz", nv.sm_clock_mhz}, {"mem_clock_mhz", nv.mem_clock_mhz},
         {"max_sm_clock_mhz", nv.max_sm_clock_mhz}, {"max_mem_clock_mhz", nv.max_mem_clock_mhz},
         {"power_limit_w", nv.power_limit_mw / 1000.0}, {"temperature_c", nv.temperature_c}};
  return env;
}

}  // namespace diffrt
