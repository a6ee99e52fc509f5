#!/usr/bin/env bash
# Builds everything and runs the whole test suite (CPU tests; GPU tests skip without a device).
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
