#!/usr/bin/env bash
# Bad input through the real binary: a clear one-line error, a non-zero exit, no crash (exit codes
# >= 128 are signals), and no half-written output.
set -uo pipefail
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
FX=$SRC/tests/fixtures/models
fails=0

"$BIN" convert "$FX/cifar_like" -o "$T/c.drt" -q || { echo "setup failed"; exit 1; }
"$BIN" convert "$FX/class_cond" -o "$T/cc.drt" -q || { echo "setup failed"; exit 1; }
head -c 1000 "$T/c.drt" > "$T/trunc.drt"
printf 'DIFFRT\0\2garbage' > "$T/magic.drt"
/usr/bin/python3 - "$T" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
np.save(d + "/x_f64.npy", np.zeros((1, 3, 16, 16)))
np.save(d + "/x_3d.npy", np.zeros((3, 16, 16), np.float32))
np.save(d + "/x_4ch.npy", np.zeros((1, 4, 16, 16), np.float32))
np.save(d + "/x_odd.npy", np.zeros((1, 3, 15, 15), np.float32))
np.save(d + "/x_ok.npy", np.zeros((1, 3, 16, 16), np.float32))
np.save(d + "/x_1ch.npy", np.zeros((1, 1, 16, 16), np.float32))
np.save(d + "/t_ok.npy", np.array([10], np.int64))
np.save(d + "/t_bad.npy", np.array([1, 2, 3], np.int64))
open(d + "/garbage.npy", "wb").write(b"\x93NUMPY\x01\x00\xff\xff{'descr'")
PYEOF
echo "precious" > "$T/keep.png"

# expect <substring> <command...>: non-zero exit below 128 and the substring on stderr.
expect() {
  local want=$1; shift
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -qF -- "$want" <<<"$err"; then
    echo "FAIL (rc=$rc): $* -> expected '$want' in: $err"; fails=$((fails + 1))
  fi
}
S=(sample -m "$T/c.drt" --steps 2 -q)
expect "no-such.drt" "$BIN" info "$T/no-such.drt"
expect "trunc.drt" "$BIN" info "$T/trunc.drt"
expect "magic.drt" "$BIN" info "$T/magic.drt"
expect "<f8" "$BIN" eval -m "$T/c.drt" --sample "$T/x_f64.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "[N, C, H, W]" "$BIN" eval -m "$T/c.drt" --sample "$T/x_3d.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "channels" "$BIN" eval -m "$T/c.drt" --sample "$T/x_4ch.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "multiple of" "$BIN" eval -m "$T/c.drt" --sample "$T/x_odd.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "t_bad.npy" "$BIN" eval -m "$T/c.drt" --sample "$T/x_ok.npy" --timesteps "$T/t_bad.npy" -o "$T/o.npy"
expect "garbage.npy" "$BIN" eval -m "$T/c.drt" --sample "$T/garbage.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "class_labels are required" "$BIN" eval -m "$T/cc.drt" --sample "$T/x_1ch.npy" --timesteps "$T/t_ok.npy" -o "$T/o.npy"
expect "--batch" "$BIN" "${S[@]}" --batch 0 -o "$T/o.png"
expect "--batch" "$BIN" "${S[@]}" --batch 1000000 -o "$T/o.png"
expect "multiple of" "$BIN" "${S[@]}" -H 15 -W 16 -o "$T/o.png"
expect "out of range" "$BIN" "${S[@]}" -H 100000 -W 100000 -o "$T/o.png"
expect "steps" "$BIN" sample -m "$T/c.drt" --steps 0 -q -o "$T/o.png"
expect "steps" "$BIN" sample -m "$T/c.drt" --steps 5000 -q -o "$T/o.png"
expect "--seed" "$BIN" "${S[@]}" --seed -5 -o "$T/o.png"
expect "--seed" "$BIN" "${S[@]}" --seed 99999999999999999999999 -o "$T/o.png"
expect "--guidance-scale" "$BIN" "${S[@]}" --guidance-scale nan -o "$T/o.png"
expect "--guidance-scale" "$BIN" "${S[@]}" --guidance-scale -3 -o "$T/o.png"
expect "--sampler: unknown sampler \"warp9\"; supported: ddpm, ddim, pndm" "$BIN" "${S[@]}" --sampler warp9 -o "$T/o.png"
expect "has no Karras sigmas" "$BIN" "${S[@]}" --sampler ddim --karras -o "$T/o.png"
expect "not class-conditional" "$BIN" "${S[@]}" --class 3 -o "$T/o.png"
expect "class-conditional" "$BIN" sample -m "$T/cc.drt" --steps 2 -q -o "$T/o.png"
expect "not a class" "$BIN" sample -m "$T/cc.drt" --steps 2 --class 99 -q -o "$T/o.png"
expect ".png or .npy" "$BIN" "${S[@]}" -o "$T/o.jpg"
expect "no-dir" "$BIN" "${S[@]}" -o "$T/no-dir/o.png"
expect "prediction_type" "$BIN" "${S[@]}" --prediction-type flow -o "$T/o.png"
expect "key=value" "$BIN" "${S[@]}" --set nonsense -o "$T/o.png"
expect "beta_end" "$BIN" "${S[@]}" --set beta_end=-1 -o "$T/o.png"
if ! nvidia-smi -L >/dev/null 2>&1; then expect "--device cuda" "$BIN" "${S[@]}" --device cuda -o "$T/o.png"; fi
# A failing run leaves an existing output untouched and no temporary files behind.
expect "--batch" "$BIN" "${S[@]}" --batch 0 -o "$T/keep.png"
[ "$(cat "$T/keep.png")" = "precious" ] || { echo "FAIL: existing output was modified"; fails=$((fails + 1)); }
if ls "$T" | grep -q '\.tmp\.'; then echo "FAIL: temporary file left behind"; fails=$((fails + 1)); fi

if [ $fails -ne 0 ]; then echo "$fails bad-input checks failed"; exit 1; fi
echo "cli bad input: all checks passed"
