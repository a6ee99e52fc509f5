#include "tests/fuzz/fuzz_targets.h"

#include "base/error.h"
#include "base/json_fields.h"
#include "model/model_file.h"
#include "base/npy.h"
#include "runtime/plan.h"
#include "runtime/schedule.h"
#include "weights_converter/dit_builder.h"
#include "weights_converter/dit_config.h"
#include "weights_converter/safetensors.h"
#include "weights_converter/unet2d_builder.h"
#include "weights_converter/unet2d_condition_builder.h"
#include "weights_converter/vae_decoder_builder.h"

namespace diffrt::fuzz {

int model_file(const uint8_t* data, size_t size) {
  try {
    ModelFile mf = parse_model_file(data, size, "fuzz.drt");
    // A file that validates must also plan: shape inference is the next consumer of the graphs.
    const int f = mf.graph.downsample_factor;
    plan_memory(mf.graph, PlanInputs{1, f, f, mf.graph.context >= 0 ? 7 : 0});
    if (mf.vae.present()) plan_memory(mf.vae.graph, 1, 2, 3);
  } catch (const Error&) {
  }
  return 0;
}

int safetensors(const uint8_t* data, size_t size) {
  try {
    SafeTensorsFile f = parse_safetensors(data, size, "fuzz.safetensors");
    for (const auto& [name, t] : f.tensors) (void)t.to_f32();
  } catch (const Error&) {
  }
  return 0;
}

int npy(const uint8_t* data, size_t size) {
  try {
    NpyArray a = parse_npy(data, size, "fuzz.npy", 1 << 24);
    if (a.type == NpyType::F32) (void)a.as_f32();
    else (void)a.as_i64();
  } catch (const Error&) {
  }
  return 0;
}

int config(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = parse_json_strict(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
  } catch (const Error&) {
    return 0;
  }
  // Each parser on its own: most inputs are valid for at most one of them.
  try {
    Graph g = build_unet2d_graph(parse_unet2d_config(j, "fuzz.json"));
    plan_memory(g, 1, g.downsample_factor, g.downsample_factor);
  } catch (const Error&) {
  }
  try {
    Graph g = build_unet2d_condition_graph(parse_unet2d_condition_config(j, "fuzz.json"));
    plan_memory(g, PlanInputs{1, g.downsample_factor, g.downsample_factor, 3});
  } catch (const Error&) {
  }
  try {  // DiT: both conditioning forms; a built graph must also survive the model file's JSON validation
    const DiTConfig c = parse_dit_config(j, "fuzz.json");
    for (bool shared : {true, false}) {
      Graph g = build_dit_graph(c, shared);
      (void)graph_from_json(graph_to_json(g), "fuzz.json");
      plan_memory(g, PlanInputs{1, g.downsample_factor, g.downsample_factor, 0});
    }
  } catch (const Error&) {
  }
  try {
    Graph g = build_vae_decoder_graph(parse_autoencoder_kl_config(j, "fuzz.json"));
    plan_memory(g, 1, 1, 1);
  } catch (const Error&) {
  }
  try {
    (void)compute_schedule(scheduler_config_from_json(j, "fuzz.json"));
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace diffrt::fuzz
