#include "tests/fuzz/fuzz_targets.h"

#include "kernels/common/error.h"
#include "runtime/format/model_file.h"
#include "runtime/npy.h"
#include "runtime/plan.h"
#include "weights_converter/safetensors.h"

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

}  // namespace diffrt::fuzz
