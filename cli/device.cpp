// --device resolution: "auto" picks CUDA when this build has the CUDA backend and a device is
// present, otherwise the CPU backend with a notice; "cuda" without one is an error.
#include <cstdio>

#include "api/diffrt.hpp"
#include "base/error.h"
#include "cli/commands.h"

namespace diffrt::cli {

std::string resolve_device(const std::string& requested, bool quiet) {
  if (requested == "cpu") return "cpu";
  std::string why;
  if (device_count(Device::Cuda, &why) > 0) return "cuda";
  if (requested == "cuda") fail(ErrorCode::Unsupported, "--device cuda: " + why + "; use --device cpu");
  if (!quiet) std::fprintf(stderr, "diffrt: %s: using the CPU backend (slow; --device cpu hides this notice)\n", why.c_str());
  return "cpu";
}

Session open_session(const std::shared_ptr<const Model>& model, const std::string& device, int threads) {
  SessionOptions o;
  o.device = device == "cuda" ? Device::Cuda : Device::Cpu;
  o.threads = threads;
  return Session(model, o);
}

}  // namespace diffrt::cli
