// Row order of a classifier-free-guided model batch: shared by the model file (which records a pipeline's
// order) and the sampler step kernels (which read it), so it lives below both.
#pragma once
#include <cstdint>

namespace diffrt {

// UncondFirst: [uncond; cond] (StableDiffusionPipeline, class-conditional UNets); CondFirst: [cond; uncond]
// (DiTPipeline).
enum class CfgOrder : uint8_t { UncondFirst, CondFirst };

}  // namespace diffrt
