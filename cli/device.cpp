// --device resolution: "auto" picks CUDA when this build has the CUDA backend and a device is
// present, otherwise the CPU backend with a notice; "cuda" without one is an error.
#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"

#ifdef DIFFRT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace diffrt::cli {

static bool cuda_device_present(std::string* why) {
#ifdef DIFFRT_HAVE_CUDA
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return false;
  }
  if (n == 0) *why = "no CUDA device";
  return n > 0;
#else
  *why = "this build has no CUDA backend";
  return false;
#endif
}

std::string resolve_device(const std::string& requested, bool quiet) {
  if (requested == "cpu") return "cpu";
  std::string why;
  if (cuda_device_present(&why)) return "cuda";
  if (requested == "cuda") fail(ErrorCode::Unsupported, "--device cuda: " + why + "; use --device cpu");
  if (!quiet) std::fprintf(stderr, "diffrt: %s: using the CPU backend (slow; --device cpu hides this notice)\n", why.c_str());
  return "cpu";
}

}  // namespace diffrt::cli
