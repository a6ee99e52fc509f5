// The diffrt subcommands. Each registers itself on the CLI11 app and returns the callback state.
#pragma once
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "api/diffrt.hpp"

namespace diffrt::cli {

void add_convert_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_decode_command(CLI::App& app);
void add_encode_prompt_command(CLI::App& app);
void add_encode_command(CLI::App& app);
// `command` is the whole command line, recorded in the results.
void add_bench_command(CLI::App& app, const std::string& command);
void add_profile_command(CLI::App& app, const std::string& command);

// --seed: "" -> a random seed (53 bits: printable and exact as a JSON number); else an integer in [0, 2^64-1].
uint64_t parse_seed(const std::string& s);

// --device: "auto" picks cuda when built with it and a device is present, else cpu with a notice.
std::string resolve_device(const std::string& requested, bool quiet);
// A session of `model` on a resolved device ("cpu" or "cuda"); threads 0: all cores.
Session open_session(const std::shared_ptr<const Model>& model, const std::string& device, int threads = 0);

}  // namespace diffrt::cli
