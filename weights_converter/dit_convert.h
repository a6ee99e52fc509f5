// DiT -> .drt (family "dit"), called by convert_diffusers for
//  * a DiTPipeline folder: model_index.json (components transformer: Transformer2DModel, vae: AutoencoderKL,
//    scheduler: any scheduler import_scheduler_config takes; optional top-level "id2label" {"0": "tench, Tinca
//    tinca", ...}), transformer/, vae/ (unless no_vae), scheduler/;
//  * a bare Transformer2DModel folder (config.json with _class_name "Transformer2DModel" + weights, optional
//    scheduler_config.json): no VAE, no class names.
// The model file records what DiTPipeline does around the transformer (model_file.h PipelineInfo): the guided batch
// is [cond; uncond] (cfg_order cond_first), the learned-sigma channels are dropped before the scheduler step
// (extra_channels drop), id2label in file order; conditioning.num_classes = the label table's rows
// (num_embeds_ada_norm + 1: the last is the learned null row) and conditioning.null_class = 1000, DiTPipeline's
// hard-coded literal, when the table has that row (the hub models: 1000 classes, null row 1000). With fewer classes
// diffusers' guidance fails (IndexError); the file then has no null class (-1) unless ConvertOptions::null_class
// names one (e.g. the null row num_embeds_ada_norm), and a warning says so.
#pragma once
#include <filesystem>

#include "weights_converter/converter.h"

namespace diffrt {

// DiTPipeline's hard-coded unconditional label (pipeline_dit.py: class_null = torch.tensor([1000] * batch_size)).
constexpr int kDiTNullClass = 1000;

// True when `dir` holds model_index.json naming a "transformer" component, or config.json whose _class_name is
// "Transformer2DModel". Reads at most those two small files; malformed JSON is left to the converter's errors.
bool is_dit_source(const std::filesystem::path& dir);

ConvertReport convert_dit(const ConvertOptions& opt);

}  // namespace diffrt
