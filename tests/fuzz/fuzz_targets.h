// The hostile-input parsers under fuzzing. Each entry must never crash, hang or read out of
// bounds on any input; rejecting it with diffrt::Error is the expected outcome.
#pragma once
#include <cstddef>
#include <cstdint>

namespace diffrt::fuzz {

int model_file(const uint8_t* data, size_t size);
int safetensors(const uint8_t* data, size_t size);
int npy(const uint8_t* data, size_t size);
// config.json / scheduler_config.json text: strict JSON, then every diffusers config parser and the
// graph builders (a config that parses must build and plan).
int config(const uint8_t* data, size_t size);

}  // namespace diffrt::fuzz
