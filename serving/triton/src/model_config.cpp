#include "model_config.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace diffrt_triton {

namespace {

constexpr int kMaxImages = 4096;  // diffrt_sample_params.batch's upper bound

// A non-negative decimal integer <= max, else an error naming the parameter.
Error parse_uint(const std::string& key, const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
    return invalid_arg("parameter '" + key + "': expected a non-negative integer, got '" + s + "'");
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno == ERANGE || v > max)
    return invalid_arg("parameter '" + key + "' = " + s + " exceeds " + std::to_string(max));
  *out = v;
  return nullptr;
}

}  // namespace

Error parse_model_config(const std::string& json, const std::string& repository, uint64_t version, unsigned cores,
                         uint64_t host_memory_bytes, ModelConfig* out) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return internal_error("the model configuration from the server is not a JSON object");
  ModelConfig c;
  if (j.contains("name") && j["name"].is_string()) c.name = j["name"].get<std::string>();

  // Triton's own batching stays off: each request carries its own NUM_IMAGES and seed, and merging
  // requests into one batch would change nothing but add latency.
  if (j.contains("max_batch_size") && j["max_batch_size"].is_number_integer() && j["max_batch_size"].get<int64_t>() != 0)
    return invalid_arg("max_batch_size must be 0 for the diffrt backend (a request's NUM_IMAGES is its batch)");

  if (j.contains("model_transaction_policy")) {
    const auto& p = j["model_transaction_policy"];
    if (p.is_object() && p.contains("decoupled")) {
      if (!p["decoupled"].is_boolean()) return invalid_arg("model_transaction_policy.decoupled must be a boolean");
      c.decoupled = p["decoupled"].get<bool>();
    }
  }

  if (j.contains("instance_group") && j["instance_group"].is_array())
    for (const auto& g : j["instance_group"]) {
      if (!g.is_object()) continue;
      const std::string kind = g.contains("kind") && g["kind"].is_string() ? g["kind"].get<std::string>() : "";
      int64_t count = 1;
      if (g.contains("count") && g["count"].is_number_integer()) count = g["count"].get<int64_t>();
      if (kind == "KIND_CPU" && count > 0) c.cpu_instances += int(std::min<int64_t>(count, 1 << 20));
    }

  std::string model_file = "model.drt";
  uint64_t threads = 0;
  bool memory_limit_set = false;
  if (j.contains("parameters") && j["parameters"].is_object()) {
    for (const auto& [key, val] : j["parameters"].items()) {
      if (!val.is_object() || !val.contains("string_value") || !val["string_value"].is_string())
        return invalid_arg("parameter '" + key + "': expected { string_value: \"...\" }");
      const std::string s = val["string_value"].get<std::string>();
      uint64_t v = 0;
      if (key == "model_file") {
        if (s.empty()) return invalid_arg("parameter 'model_file' is empty");
        model_file = s;
      } else if (key == "threads") {
        DIFFRT_TRITON_TRY(parse_uint(key, s, 1024, &threads));
      } else if (key == "memory_limit_bytes") {
        DIFFRT_TRITON_TRY(parse_uint(key, s, UINT64_MAX, &c.memory_limit_bytes));
        memory_limit_set = true;
      } else if (key == "max_num_images") {
        DIFFRT_TRITON_TRY(parse_uint(key, s, kMaxImages, &v));
        if (v < 1) return invalid_arg("parameter 'max_num_images' must be in [1, 4096]");
        c.max_num_images = int(v);
      } else if (key == "deterministic") {
        if (s != "0" && s != "1") return invalid_arg("parameter 'deterministic' must be \"0\" or \"1\", got '" + s + "'");
        c.deterministic = s == "1";
      } else if (key == "rng") {
        if (s == "philox") c.rng = DIFFRT_RNG_PHILOX;
        else if (s == "torch") c.rng = DIFFRT_RNG_TORCH;
        else return invalid_arg("parameter 'rng' must be \"philox\" or \"torch\", got '" + s + "'");
      } else {
        return invalid_arg("unknown parameter '" + key +
                           "' (known: model_file, threads, memory_limit_bytes, max_num_images, deterministic, rng)");
      }
    }
  }
  c.model_file = model_file[0] == '/' ? model_file : repository + "/" + std::to_string(version) + "/" + model_file;
  const unsigned per = c.cpu_instances > 0 ? cores / unsigned(c.cpu_instances) : cores;
  c.threads = threads ? int(threads) : int(std::max(1u, per));
  c.cpu_memory_limit_bytes =
      memory_limit_set ? c.memory_limit_bytes : host_memory_bytes / 2 / uint64_t(std::max(1, c.cpu_instances));
  *out = std::move(c);
  return nullptr;
}

}  // namespace diffrt_triton
