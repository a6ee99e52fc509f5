#!/usr/bin/env bash
# diffrt encode through the real binary: a converted tiny SD pipeline encodes images as diffusers 0.27.2's img2img
# pipeline does before its loop (PNG via Pillow's LANCZOS and .npy via nearest, the posterior drawn from
# torch.Generator().manual_seed(seed): init_latents), the moments and the mean, the Philox mode; and every bad
# input a user can hit: one clear error naming the argument, a non-zero exit, nothing written.
set -uo pipefail
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}; PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
FX=$SRC/tests/fixtures
fails=0
die() { echo "FAIL: $*"; exit 1; }

"$BIN" convert "$FX/sd/sd1_tiny/pipeline" -o "$T/sd.drt" -q 2>/dev/null || die "convert"
grep -q "encode and image-to-image work" <<<"$("$BIN" info "$T/sd.drt")" || die "info does not show the encoder"
"$BIN" convert "$FX/sd/sd1_tiny/pipeline" -o "$T/noenc.drt" -q --no-vae-encoder 2>/dev/null || die "convert --no-vae-encoder"
grep -q "no encoder" <<<"$("$BIN" info "$T/noenc.drt")" || die "info on a file without encoder"
"$BIN" convert "$FX/models/cifar_like" -o "$T/pixel.drt" -q || die "convert cifar_like"

R=$FX/img2img/img2img/sd1
V=$FX/img2img/vae_encode/sd1_b1_24x40
$PY - "$T" "$R" "$V" <<'PYEOF' || die "making inputs"
import sys, numpy as np
from PIL import Image
t, r, v = sys.argv[1:]
Image.fromarray(np.load(r + "/eulera_s1.0_g7.5_b1_pil17x23/image_u8.npy"), "RGB").save(t + "/pil17x23.png")
Image.fromarray(np.load(r + "/eulera_s1.0_g7.5_b1_pil17x23/image_u8.npy")[..., 0], "L").save(t + "/grey.png")
np.save(t + "/x24x40.npy", np.load(v + "/x.npy").transpose(0, 2, 3, 1).copy())  # NHWC in [-1, 1]
a = np.load(r + "/ddim_s0.6_g7.5_b1/image.npy")
bad = a.copy(); bad[0, 3, 4, 1] = np.nan; np.save(t + "/nan.npy", bad)
bad = a.copy(); bad[0, 3, 4, 1] = 1.5; np.save(t + "/big.npy", bad)
np.save(t + "/f64.npy", a.astype(np.float64))
np.save(t + "/c4.npy", np.concatenate([a, a[..., :1]], -1))
np.save(t + "/one_px.npy", a[:, :1, :1])
np.save(t + "/rank5.npy", a[None])
Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000), "I;16").save(t + "/grey16.png")
open(t + "/junk.png", "wb").write(b"\x89PNG\r\n\x1a\nnot really")
PYEOF

# 1. PNG input (LANCZOS 17x23 -> 16x22) with the pipeline's generator: the img2img run's moments and init_latents.
"$BIN" encode -m "$T/sd.drt" --image "$T/pil17x23.png" --moments -o "$T/m_pil.npy" -q --device cpu || die "encode --moments"
seed=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$R/eulera_s1.0_g7.5_b1_pil17x23/meta.json")
out=$("$BIN" encode -m "$T/sd.drt" --image "$T/pil17x23.png" --rng torch --seed "$seed" -o "$T/z_pil.npy" \
      --device cpu 2>"$T/err") || die "encode png: $(cat "$T/err")"
grep -qx "seed: $seed" <<<"$out" || die "seed not printed: $out"
grep -q "resized 17x23 -> 16x22 (LANCZOS" "$T/err" || die "no resize notice: $(cat "$T/err")"
# 2. .npy input in [0, 1] (normalised 2x - 1), seed of the run: init_latents; the mean; Philox twice.
seed2=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$R/ddim_s0.6_g7.5_b1/meta.json")
"$BIN" encode -m "$T/sd.drt" --image "$R/ddim_s0.6_g7.5_b1/image.npy" --rng torch --seed "$seed2" -o "$T/z_np.npy" -q \
  --device cpu >/dev/null || die "encode npy"
"$BIN" encode -m "$T/sd.drt" --image "$R/ddim_s0.6_g7.5_b1/image.npy" --mean -o "$T/mean.npy" -q --device cpu || die "--mean"
"$BIN" encode -m "$T/sd.drt" --image "$R/ddim_s0.6_g7.5_b1/image.npy" --seed 7 -o "$T/p1.npy" -q --device cpu >/dev/null &&
"$BIN" encode -m "$T/sd.drt" --image "$R/ddim_s0.6_g7.5_b1/image.npy" --seed 7 --sample -o "$T/p2.npy" -q --device cpu \
  >/dev/null || die "philox"
# 3. [-1, 1] input (taken as normalised, as diffusers does), unscaled: latent_dist.sample(generator) itself.
vseed=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$V/meta.json")
"$BIN" encode -m "$T/sd.drt" --image "$T/x24x40.npy" --rng torch --seed "$vseed" --unscaled -o "$T/z_v.npy" \
  --device cpu >/dev/null 2>"$T/err" || die "encode [-1,1]: $(cat "$T/err")"
grep -q "taken as images in \[-1, 1\]" "$T/err" || die "no normalisation notice: $(cat "$T/err")"
"$BIN" encode -m "$T/sd.drt" --image "$T/grey.png" --mean -o "$T/grey_mean.npy" --device cpu 2>"$T/err" ||
  die "grey png: $(cat "$T/err")"
grep -q "greyscale converted to RGB" "$T/err" || die "no grey notice: $(cat "$T/err")"

$PY - "$T" "$R" "$V" <<'PYEOF' || die "values"
import sys, numpy as np
t, r, v = sys.argv[1:]
def close(name, a, b, tol):
    a, b = np.load(a) if isinstance(a, str) else a, np.load(b) if isinstance(b, str) else b
    assert a.shape == b.shape, (name, a.shape, b.shape)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
    print(f"encode cli {name}: max_abs/max {err:.3g}")
    assert err < tol, name
p = r + "/eulera_s1.0_g7.5_b1_pil17x23/"
close("png moments", t + "/m_pil.npy", p + "moments.npy", 2e-6)
close("png init_latents", t + "/z_pil.npy", p + "init_latents.npy", 3e-6)
q = r + "/ddim_s0.6_g7.5_b1/"
close("npy init_latents", t + "/z_np.npy", q + "init_latents.npy", 3e-6)
close("npy mean", t + "/mean.npy", np.load(q + "moments.npy")[:, :4] * np.float32(0.18215), 3e-6)
a, b = np.load(t + "/p1.npy"), np.load(t + "/p2.npy")
assert (a == b).all() and a.shape == (1, 4, 8, 8) and np.abs(a - np.load(t + "/mean.npy")).max() > 1e-3
close("[-1,1] sample", t + "/z_v.npy", v + "/sample.npy", 3e-6)
assert np.load(t + "/grey_mean.npy").shape == (1, 4, 8, 11)
PYEOF

# Bad input: rc in [1, 128), the message, no output.
expect() {  # expect <substring> <command...>
  local want=$1; shift
  rm -f "$T/o.npy"
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -qF -- "$want" <<<"$err" || [ -e "$T/o.npy" ]; then
    echo "FAIL (rc=$rc): $* -> expected '$want' in: $err"; fails=$((fails + 1))
  fi
}
E=(encode -m "$T/sd.drt" --device cpu -o "$T/o.npy" -q)
IMG=$R/ddim_s0.6_g7.5_b1/image.npy
expect "no VAE encoder" "$BIN" encode -m "$T/noenc.drt" --image "$IMG" -o "$T/o.npy" --device cpu
expect "no VAE (a pixel-space model" "$BIN" encode -m "$T/pixel.drt" --image "$IMG" -o "$T/o.npy" --device cpu
expect "-o: output must end in .npy" "$BIN" encode -m "$T/sd.drt" --image "$IMG" -o "$T/o.png" --device cpu
expect "--image: $T/nan.npy: value" "$BIN" "${E[@]}" --image "$T/nan.npy"
expect "is NaN" "$BIN" "${E[@]}" --image "$T/nan.npy"
expect "must be in [0, 1]" "$BIN" "${E[@]}" --image "$T/big.npy"
expect "f64.npy: unsupported npy dtype" "$BIN" "${E[@]}" --image "$T/f64.npy"
expect "images have 4 channels" "$BIN" "${E[@]}" --image "$T/c4.npy"
expect "below the VAE's factor 2" "$BIN" "${E[@]}" --image "$T/one_px.npy"
expect "got 5 dimensions" "$BIN" "${E[@]}" --image "$T/rank5.npy"
expect "16-bit PNG" "$BIN" "${E[@]}" --image "$T/grey16.png"
expect "--image: $T/junk.png: invalid PNG" "$BIN" "${E[@]}" --image "$T/junk.png"
expect "--image: $T/missing.png: cannot open" "$BIN" "${E[@]}" --image "$T/missing.png"
expect "must be a .png or an .npy file" "$BIN" "${E[@]}" --image "$T/sd.drt"
expect "--sample and --mean" "$BIN" "${E[@]}" --image "$IMG" --sample --mean
expect "--seed: --mean draws no noise" "$BIN" "${E[@]}" --image "$IMG" --mean --seed 3
expect "--moments writes the posterior's parameters" "$BIN" "${E[@]}" --image "$IMG" --moments --rng torch
expect "--seed: expected an integer" "$BIN" "${E[@]}" --image "$IMG" --seed -5
expect "--height" "$BIN" "${E[@]}" --image "$IMG" --height 0
expect "height = 1 is below the VAE's factor 2" "$BIN" "${E[@]}" --image "$IMG" --height 1
echo "precious" > "$T/keep.npy"
"$BIN" encode -m "$T/sd.drt" --image "$T/nan.npy" -o "$T/keep.npy" --device cpu -q 2>/dev/null
grep -qx precious "$T/keep.npy" || { echo "FAIL: a failed encode overwrote its output"; fails=$((fails + 1)); }
[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "encode cli: ok"
