// libFuzzer entry for the diffusers config parsers and graph builders (see scripts/fuzz.sh).
#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return diffrt::fuzz::config(data, size); }
