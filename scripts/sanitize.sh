#!/usr/bin/env bash
# Builds the CPU code and tests with ASan+UBSan (clang; scripts/asan_build.sh) and runs the CPU test suite under them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/asan_build.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The 1000-step pipeline parity run is the same code as the short runs, 50x longer under ASan; the digits quality
# check (a statistical test of the bundled model, 3 minutes under ASan) runs code the sample tests already cover.
ctest --test-dir build-asan -L cpu --output-on-failure -j"$(nproc)" --timeout 1200 -E 'PipelineParity|quality_digits'
