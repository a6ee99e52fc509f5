// Options and output helpers shared by `diffrt bench` and `diffrt profile` (cmd_bench.cpp, cmd_profile.cpp); the
// measurements themselves are the API's hooks (api/diffrt_bench.hpp).
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>

#include "api/diffrt_bench.hpp"

namespace diffrt::cli {

// The workload flags: -b, -H, -W, --steps, --sampler, --eta, --guidance-scale, --context-len, --prompt-embeds,
// --negative-prompt-embeds, --seed.
void add_workload_options(CLI::App* c, bench::Workload& o, const char* steps_help);

// Writes JSON text atomically (1-space indent); errors name the path.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace diffrt::cli
