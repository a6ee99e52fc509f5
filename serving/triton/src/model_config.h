// The parts of a Triton model configuration (config.pbtxt, as the JSON the server hands the backend)
// that the diffrt backend reads. Every field is type-checked; a wrong one fails the model load with a
// message naming it. The `parameters` map (string values, as Triton requires) holds diffrt's settings:
//
//   model_file          the .drt file: absolute, or relative to the model version folder
//                       (default "model.drt", i.e. <repository>/<model>/<version>/model.drt)
//   threads             CPU instances: OpenMP threads per session; 0 (default): the machine's cores
//                       divided by the model's CPU instance count (at least 1)
//   memory_limit_bytes  per session: a request whose estimated working memory exceeds it is refused
//                       (UNAVAILABLE, with the bytes needed) before anything is allocated. Default for
//                       CPU instances: half the machine's memory divided by the CPU instance count (so
//                       no request can push the server into the OOM killer); for GPU instances none
//                       (diffrt checks the device's free memory). "0": no limit
//   max_num_images      images one request may ask for (NUM_IMAGES or the batch of its embeddings);
//                       default 16, at most 4096
//   deterministic       GPU instances: "1" (default) picks cuDNN algorithms by heuristic so every
//                       instance returns the same bytes for the same request; "0": fastest measured
//   rng                 "philox" (default; image i of a seed is the same at any batch and device) or
//                       "torch" (torch.randn-compatible, as diffusers draws noise)
#pragma once
#include <cstdint>
#include <string>

#include "triton_util.h"

namespace diffrt_triton {

struct ModelConfig {
  std::string name;
  std::string model_file;  // resolved path
  bool decoupled = false;
  int threads = 0;         // resolved (>= 1) for CPU sessions
  uint64_t memory_limit_bytes = 0;  // GPU sessions (and CPU ones when set explicitly)
  uint64_t cpu_memory_limit_bytes = 0;  // CPU sessions
  int max_num_images = 16;
  bool deterministic = true;
  int rng = 0;             // diffrt_rng
  int cpu_instances = 0;   // sum of the KIND_CPU instance_group counts
};

// Parses `json` (TRITONBACKEND_ModelConfig serialised) for the model at `repository` (the model's
// folder) and `version`. `cores` and `host_memory_bytes` are the machine's (for the defaults).
Error parse_model_config(const std::string& json, const std::string& repository, uint64_t version, unsigned cores,
                         uint64_t host_memory_bytes, ModelConfig* out);

}  // namespace diffrt_triton
