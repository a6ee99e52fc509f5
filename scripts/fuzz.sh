#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (+ASan/UBSan, in the build sanitize.sh tests: scripts/asan_build.sh)
# and fuzzes each parser for a bounded time, seeded with small valid files from the converter and the fixtures.
# New crashers are copied into tests/fuzz/regressions/<target>/ (replayed by fuzz_replay_test) and fail this script.
# Usage: bash scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
bash scripts/asan_build.sh fuzz_model_file fuzz_safetensors fuzz_npy fuzz_config  # a no-op after sanitize.sh

W=build-asan/work; rm -rf "$W"; mkdir -p "$W"
for t in model_file safetensors npy config; do mkdir -p "$W/$t/corpus" "$W/$t/crashes"; cp tests/fuzz/regressions/$t/* "$W/$t/corpus/" 2>/dev/null || true; done
for f in tests/fixtures/models/sharded/*.safetensors; do cp "$f" "$W/safetensors/corpus/"; done
i=0; for f in $(find tests/fixtures models -name '*config*.json' | sort); do cp "$f" "$W/config/corpus/seed_$i.json"; i=$((i+1)); done
find tests/fixtures/scheduler -name '*.npy' -size -2k | head -40 | xargs -I{} cp {} "$W/npy/corpus/" 2>/dev/null || true

status=0
for t in model_file safetensors npy config; do
  log="$W/$t/log.txt"
  # -rss_limit_mb: the readers must reject huge declared sizes before allocating.
  ./build-asan/tests/fuzz/fuzz_$t "$W/$t/corpus" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$W/$t/crashes/" -print_final_stats=1 >"$log" 2>&1 || true
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  echo "fuzz $t: ${execs:-?} executions in ${SECS}s"
  if ls "$W/$t/crashes/"* >/dev/null 2>&1; then
    echo "fuzz $t: FOUND crashing inputs:"; ls "$W/$t/crashes/"
    cp "$W/$t/crashes/"* tests/fuzz/regressions/$t/
    tail -40 "$log"; status=1
  fi
done
exit $status
