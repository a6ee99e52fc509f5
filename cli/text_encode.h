// The model file's text encoder on the CLI's chosen device, for `diffrt sample --prompt` and
// `diffrt encode-prompt`.
#pragma once
#include <string>

#include "model/model_file.h"
#include "runtime/text_encoder.h"

namespace diffrt::cli {

// A TextEncodeFn running mf's text encoder on `device` ("cpu" or "cuda"); mf must outlive it.
TextEncodeFn text_encoder_on(const std::string& device, const ModelFile& mf);

}  // namespace diffrt::cli
