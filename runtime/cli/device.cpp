#include <cstdio>

#include "kernels/common/error.h"
#include "runtime/cli/commands.h"

namespace diffrt::cli {

// The CUDA executor is not wired into the CLI yet: every run uses the CPU reference backend.
std::string resolve_device(const std::string& requested, bool quiet) {
  if (requested == "cuda")
    fail(ErrorCode::Unsupported, "--device cuda: the CUDA backend is not available in this build yet; use --device cpu");
  (void)quiet;
  return "cpu";
}

}  // namespace diffrt::cli
