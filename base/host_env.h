// Facts about the machine a benchmark ran on, for the JSON that diffrt bench / profile write (DESIGN.md: results
// carry GPU, driver, CUDA version, date and the exact command). The GPU half is runtime/cuda/cuda_env.h.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace diffrt {

// "2025-01-31T12:00:00Z"
std::string utc_now_iso();

// host, CPU model, logical cores, OpenMP threads, OS release, git sha ($DIFFRT_GIT_SHA when set), diffrt version.
nlohmann::json host_environment_json();

// The command line as one string (arguments with spaces or quotes are single-quoted).
std::string command_line(int argc, const char* const* argv);

}  // namespace diffrt
