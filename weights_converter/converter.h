// diffusers folder -> .drt model file. Accepts a UNet2DModel folder (config.json +
// diffusion_pytorch_model.safetensors or a sharded index, optional scheduler_config.json) or a
// pipeline folder (model_index.json, unet/, scheduler/). Pickle checkpoints are refused.
#pragma once
#include <string>
#include <vector>

#include "kernels/common/dtype.h"

namespace diffrt {

struct ConvertOptions {
  std::string input;             // diffusers model or pipeline folder
  std::string output;            // .drt path (written atomically)
  DType dtype = DType::F32;
  std::string scheduler_config;  // overrides the folder's scheduler_config.json when set
  bool strict = false;           // unexpected tensors are errors
  int null_class = -2;           // -2: auto (last class of a class-conditional model), -1: none
};

struct ConvertReport {
  std::string unet_dir, weights_source, scheduler_source;
  size_t tensors = 0, nodes = 0;
  uint64_t bytes = 0;
  std::vector<std::string> warnings;
};

ConvertReport convert_diffusers(const ConvertOptions& opt);

}  // namespace diffrt
