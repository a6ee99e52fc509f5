#!/usr/bin/env bash
# Quality gate for the bundled digits model, judged by a classifier rather than by matching numbers
# (issue: a broken kernel, scheduler or guidance must fail this). diffrt samples 10 per class with
# classifier-free guidance and 100 unconditional (null-class) samples; tests/quality/digit_quality.py
# trains a scikit-learn classifier on the same dataset and checks: >= 90% of guided samples are
# classified as requested, and no class takes more than 30% of the unconditional ones.
set -euo pipefail
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$BIN" convert "$SRC/models/digits" -o "$T/digits.drt" -q
COMMON=(--sampler ddim --steps 50 --batch 100 -q --set clip_sample=false)
"$BIN" sample -m "$T/digits.drt" "${COMMON[@]}" --class 0,1,2,3,4,5,6,7,8,9 --guidance-scale 3 --seed 1 -o "$T/cond.npy" >/dev/null
"$BIN" sample -m "$T/digits.drt" "${COMMON[@]}" --class 10 --seed 2 -o "$T/uncond.npy" >/dev/null
/usr/bin/python3 -c "import json; json.dump([i % 10 for i in range(100)], open('$T/labels.json', 'w'))"
/usr/bin/python3 "$SRC/tests/quality/digit_quality.py" --samples-cond "$T/cond.npy" --labels-cond "$T/labels.json" \
  --samples-uncond "$T/uncond.npy"
