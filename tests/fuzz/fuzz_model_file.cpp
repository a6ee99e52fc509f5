// libFuzzer entry for the model_file parser (built with -DDIFFRT_FUZZ=ON and clang; see scripts/fuzz.sh).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return diffrt::fuzz::model_file(data, size); }
