// diffrt: convert diffusers checkpoints and sample them. Errors print one line naming the file,
// field or argument and exit non-zero (2: usage/argument, 3: model, 4: unsupported, 5: I/O,
// 6: out of memory, 7: CUDA, 8: cancelled, 1: other).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/error.h"
#include "base/host_env.h"
#include "cli/commands.h"

// libgomp's default is to spin-wait at barriers. With as many threads as cores and anything else
// running (a build, a second diffrt), the spinning threads starve the one doing the work: sampling
// measured 20x slower. The policy is read only when libgomp loads, so set it and re-exec once,
// unless the user chose a policy.
static void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with libgomp's default
}

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  CLI::App app{"diffrt " DIFFRT_VERSION_STRING ": diffusion-model sampling runtime (diffusers UNet2DModel and Stable Diffusion checkpoints)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "diffrt " DIFFRT_VERSION_STRING);
  diffrt::cli::add_convert_command(app);
  diffrt::cli::add_info_command(app);
  diffrt::cli::add_eval_command(app);
  diffrt::cli::add_sample_command(app);
  diffrt::cli::add_decode_command(app);
  diffrt::cli::add_encode_prompt_command(app);
  diffrt::cli::add_encode_command(app);
  const std::string command = diffrt::command_line(argc, argv);
  diffrt::cli::add_bench_command(app, command);
  diffrt::cli::add_profile_command(app, command);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const diffrt::Error& e) {
    std::fprintf(stderr, "diffrt: error: %s\n", e.what());
    switch (e.code()) {
      case diffrt::ErrorCode::InvalidArgument: return 2;
      case diffrt::ErrorCode::InvalidModel: return 3;
      case diffrt::ErrorCode::Unsupported: return 4;
      case diffrt::ErrorCode::Io: return 5;
      case diffrt::ErrorCode::OutOfMemory: return 6;
      case diffrt::ErrorCode::Cuda: return 7;
      case diffrt::ErrorCode::Cancelled: return 8;
      default: return 1;
    }
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "diffrt: error: out of host memory\n");
    return 6;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "diffrt: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
