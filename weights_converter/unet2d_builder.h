// Builds the diffrt op graph of a diffusers UNet2DModel from its config, and the tensors the graph
// binds (converted layouts: conv weights OIHW -> KRSC [Cout, KH, KW, Cin]; attention q/k/v fused
// into one [3C, C] projection; cast to the target dtype). The checkpoint is checked against the
// tensors the config implies: missing, unexpected and mis-shaped tensors are reported together.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "runtime/format/model_file.h"
#include "weights_converter/safetensors.h"
#include "weights_converter/unet2d_config.h"

namespace diffrt {

struct BuiltModel {
  Graph graph;
  std::vector<TensorBlob> tensors;
  std::vector<std::string> warnings;
};

// Renames pre-0.17 attention weights (query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0) and
// squeezes [C, C, 1, 1] attention weights to [C, C], as diffusers does on load.
void rename_legacy_attention(std::map<std::string, SafeTensor>& weights);

// `strict`: unexpected tensors are errors (otherwise warnings).
BuiltModel build_unet2d(const UNet2DConfig& cfg, const std::map<std::string, SafeTensor>& weights,
                        DType dtype, bool strict, const std::string& origin);

// The graph alone (no weights), e.g. for tests and plan-only checks.
Graph build_unet2d_graph(const UNet2DConfig& cfg);

}  // namespace diffrt
