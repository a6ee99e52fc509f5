// Pieces of the diffusers-folder converter (weights_converter/converter.cpp) shared with the other pipeline
// converters (weights_converter/dit_convert.cpp): strict JSON files, checkpoint discovery with pickle refusal,
// component folders confined to the pipeline folder, and the AutoencoderKL decoder component.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "weights_converter/converter.h"
#include "weights_converter/safetensors.h"

namespace diffrt::convert_detail {

// A JSON file (at most 1 MiB), strictly parsed (no duplicate keys); errors name the file.
nlohmann::json read_json_file(const std::filesystem::path& p);
// The checkpoint of a model folder: diffusion_pytorch_model.safetensors or its sharded index; pickles are refused
// by name. `source` receives the file read.
std::map<std::string, SafeTensor> load_weights(const std::filesystem::path& dir, std::string* source);
// A pipeline component folder; it must resolve inside the pipeline folder (no symlink escapes). Empty path when it
// does not exist.
std::filesystem::path component_dir(const std::filesystem::path& root, const std::string& name);
// The UTC time as ISO 8601 (provenance).
std::string utc_now();
// The AutoencoderKL decoder of vae_dir (config checked against latent_channels before any weights are read; the
// encoder is left out), as a model-file VaeDecoder; its tensors ("vae.*") are appended to `tensors`, its warnings (prefixed "vae: ") to
// `warnings`.
VaeDecoder convert_vae_component(const std::filesystem::path& vae_dir, int latent_channels, const ConvertOptions& opt,
                                 std::vector<TensorBlob>* tensors, std::vector<std::string>* warnings,
                                 std::string* config_path, std::string* weights_path);

}  // namespace diffrt::convert_detail
