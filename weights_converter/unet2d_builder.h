// Builds the diffrt op graph of a diffusers UNet2DModel from its config, and the tensors the graph
// binds (converted layouts: conv weights OIHW -> KRSC [Cout, KH, KW, Cin]; attention q/k/v fused
// into one [3C, C] projection; cast to the target dtype). The checkpoint is checked against the
// tensors the config implies: missing, unexpected and mis-shaped tensors are reported together.
// The blocks themselves (resnet, attention, resamplers) are in block_builder.h.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "weights_converter/block_builder.h"
#include "weights_converter/safetensors.h"
#include "weights_converter/unet2d_config.h"

namespace diffrt {

// `strict`: unexpected tensors are errors (otherwise warnings).
BuiltModel build_unet2d(const UNet2DConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                        DType dtype, bool strict, const std::string& origin);

// The graph alone (no weights), e.g. for tests and plan-only checks.
Graph build_unet2d_graph(const UNet2DConfig& cfg);

// The checkpoint tensors (diffusers name -> shape) the config implies.
std::map<std::string, TensorShape> unet2d_expected_tensors(const UNet2DConfig& cfg);

}  // namespace diffrt
