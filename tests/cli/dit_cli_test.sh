#!/usr/bin/env bash
# DiT through the real binary: convert a DiTPipeline folder, `diffrt info`, eval (float timesteps, the null class
# 1000) and sample with guidance and --rng torch, checked against diffusers' DiTPipeline outputs
# (tests/fixtures/dit); a bare Transformer2DModel folder; and the conversion errors a user can hit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
FX=$SRC/tests/fixtures/dit/dit_s8_sigma

"$BIN" convert "$FX/pipeline" -o "$T/dit.drt" -q
grep -q "family:      dit" <<<"$("$BIN" info "$T/dit.drt")"
grep -q "null class for guidance: 1000" <<<"$("$BIN" info "$T/dit.drt")"

F=$FX/fwd0  # t = [999, 0, 437.5], labels [207, 1000 (null), 1]
"$BIN" eval -m "$T/dit.drt" --sample "$F/x.npy" --timesteps "$F/t.npy" --class-labels "$F/class_labels.npy" \
  -o "$T/e.npy" -q --device cpu
$PY - "$T/e.npy" "$F/out.npy" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
rel = np.linalg.norm(a - b) / np.linalg.norm(b); print("dit eval rel_l2", rel); assert rel < 1e-5
PYEOF

# sample: DiTPipeline(class_labels=[207, 1], guidance_scale=4, 10 steps, seed 0), decoded by the VAE; then the same
# through DPMSolverMultistepScheduler.from_config (the dpm runs' effective config) by name.
P=$FX/pipelines/ddim10_g4_b2
"$BIN" sample -m "$T/dit.drt" --class 207,1 -b 2 --guidance-scale 4 --sampler ddim --steps 10 --seed 0 --rng torch \
  -o "$T/s.npy" -q --device cpu | grep -qx "seed: 0"
$PY - "$T/s.npy" "$P/images.npy" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max(); print("dit sample images max_abs", err); assert err < 1e-4
PYEOF
P=$FX/pipelines/dpm10_g4_b1
"$BIN" sample -m "$T/dit.drt" --class 134 --guidance-scale 4 --sampler DPMSolverMultistepScheduler --steps 10 --seed 2 \
  --rng torch -o "$T/s.npy" -q --device cpu | grep -qx "seed: 2"
$PY - "$T/s.npy" "$P/images.npy" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max(); print("dit dpm sample images max_abs", err); assert err < 1e-4
PYEOF

"$BIN" convert "$SRC/tests/fixtures/dit_extra/dit_p1_geglu/transformer" -o "$T/bare.drt" -q 2>/dev/null
grep -q "classes:     1501" <<<"$("$BIN" info "$T/bare.drt")"

# Errors: each names the problem, exits non-zero, writes nothing.
cp -r "$FX/pipeline" "$T/bad"
$PY - "$T/bad/transformer/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1])); c["norm_type"] = "ada_norm_single"; json.dump(c, open(sys.argv[1], "w"))
PYEOF
expect "unsupported norm_type" "$BIN" convert "$T/bad" -o "$T/bad.drt" -q
test ! -e "$T/bad.drt"
expect "--null-class 5000" "$BIN" convert "$FX/pipeline" -o "$T/n.drt" --null-class 5000 -q
echo "dit cli ok"
