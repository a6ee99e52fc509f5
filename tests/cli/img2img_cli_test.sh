#!/usr/bin/env bash
# diffrt sample --init-image / --strength / --mask through the real binary against diffusers 0.27.2
# (tests/fixtures/img2img): StableDiffusionImg2ImgPipeline with DPM++ 2M Karras from a PNG, the 9-channel
# StableDiffusionInpaintPipeline with a PNG mask, the legacy 4-channel inpainting with a 20x20 .npy mask (nearest to
# 16x16), all with --rng torch and the run's seed; a pixel-model SDEdit (the bundled digits model) with its PNG
# metadata; and the bad inputs: non-zero exit, one message naming the flag, no output written.
set -uo pipefail
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}; PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
FX=$SRC/tests/fixtures
I=$FX/img2img
fails=0
die() { echo "FAIL: $*"; exit 1; }

"$BIN" convert "$FX/sd/sd1_tiny/pipeline" -o "$T/sd.drt" -q 2>/dev/null || die "convert sd1_tiny"
"$BIN" convert "$I/sd1_inpaint_tiny/pipeline" -o "$T/sd9.drt" -q 2>/dev/null || die "convert sd1_inpaint_tiny"
"$BIN" convert "$SRC/models/digits" -o "$T/digits.drt" -q 2>/dev/null || die "convert digits"

$PY - "$T" "$I" <<'PYEOF' || die "making inputs"
import sys, numpy as np
from PIL import Image
t, i = sys.argv[1:]
e = np.load(i + "/embeds/sd1_prompt_embeds.npy"); n = np.load(i + "/embeds/sd1_negative_prompt_embeds.npy")
np.save(t + "/pos1.npy", e[:1]); np.save(t + "/neg1.npy", n[:1]); np.save(t + "/pos2.npy", e[:2])
Image.fromarray(np.load(i + "/img2img/sd1/dpmkarras_s0.6_g7.5_b1_pil/image_u8.npy"), "RGB").save(t + "/i2i.png")
r9 = i + "/inpaint/unet9_ddim_s0.6_g1_p2_pil_pilmask"
Image.fromarray(np.load(r9 + "/image_u8.npy"), "RGB").save(t + "/in9.png")
Image.fromarray(np.load(r9 + "/mask_u8.npy"), "L").save(t + "/mask9.png")
Image.fromarray(np.load(i + "/inpaint/unet4_eulera_s0.6_g7.5_b1_mask20/image_u8.npy"), "RGB").save(t + "/in4.png")
a = np.load(i + "/img2img/sd1/ddim_s0.6_g7.5_b1/image.npy")
bad = a.copy(); bad[0, 3, 4, 1] = np.nan; np.save(t + "/nan.npy", bad)
np.save(t + "/one_px.npy", a[:, :1, :1])
PYEOF

seed() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$1/meta.json"; }
S=(sample --device cpu -q --rng torch --steps 10 --output-type latent)
# 1. img2img, DPM++ 2M Karras, PNG input (the PIL path), guidance 7.5.
R1=$I/img2img/sd1/dpmkarras_s0.6_g7.5_b1_pil
"$BIN" "${S[@]}" -m "$T/sd.drt" --prompt-embeds "$T/pos1.npy" --negative-prompt-embeds "$T/neg1.npy" \
  --guidance-scale 7.5 --sampler dpmpp-2m --karras --init-image "$T/i2i.png" --strength 0.6 --seed "$(seed "$R1")" \
  -o "$T/i2i.npy" >/dev/null || die "img2img"
# 2. 9-channel inpainting, DDIM, two prompts, one PNG image and one PNG mask (L), no guidance.
R2=$I/inpaint/unet9_ddim_s0.6_g1_p2_pil_pilmask
"$BIN" "${S[@]}" -m "$T/sd9.drt" --prompt-embeds "$T/pos2.npy" --guidance-scale 1 --sampler ddim \
  --init-image "$T/in9.png" --mask "$T/mask9.png" --strength 0.6 --seed "$(seed "$R2")" -o "$T/in9.npy" >/dev/null ||
  die "inpaint 9-channel"
# 3. legacy 4-channel inpainting, Euler a, a 20x20 .npy mask (nearest to 16x16), guidance 7.5.
R3=$I/inpaint/unet4_eulera_s0.6_g7.5_b1_mask20
"$BIN" "${S[@]}" -m "$T/sd.drt" --prompt-embeds "$T/pos1.npy" --negative-prompt-embeds "$T/neg1.npy" \
  --guidance-scale 7.5 --sampler euler-a --init-image "$T/in4.png" --mask "$R3/mask.npy" --strength 0.6 \
  --seed "$(seed "$R3")" -o "$T/in4.npy" >/dev/null || die "inpaint 4-channel"
# 4. SDEdit on the digits model (pixel space), as the fixture run, into a PNG with its metadata.
R4=$I/sdedit/digits_ddim20_eta0_s0.6_label0
"$BIN" sample --device cpu -q --rng torch -m "$T/digits.drt" --sampler ddim --steps 20 --class 0,8 -b 2 \
  --init-image "$R4/image.npy" --strength 0.6 --seed "$(seed "$R4")" -o "$T/sdedit.npy" >/dev/null || die "sdedit"
"$BIN" sample --device cpu -q -m "$T/digits.drt" --sampler ddim --steps 20 --class 0,8 \
  --init-image "$R4/image.npy" --strength 0.6 --seed 5 -o "$T/sdedit.png" >/dev/null || die "sdedit png"

$PY - "$T" "$R1" "$R2" "$R3" "$R4" <<'PYEOF' || fails=$((fails + 1))
import sys, json, numpy as np
from PIL import Image
t, r1, r2, r3, r4 = sys.argv[1:]
bad = 0
def close(what, got, want, rel):
    global bad
    g, w = np.load(got), np.load(want)
    d = float(np.abs(g - w).max()) if g.shape == w.shape else float("inf")
    tol = rel * max(1.0, float(np.abs(w).max()))
    print(f"[img2img cli] {what}: max |diff| {d:.2e} (tol {tol:.1e})")
    if not d <= tol: print(f"FAIL: {what}: shape {g.shape} vs {w.shape}, max |diff| {d}"); bad += 1
close("img2img dpmpp-2m karras png", t + "/i2i.npy", r1 + "/latents.npy", 2e-5)
close("inpaint 9-channel png mask", t + "/in9.npy", r2 + "/latents.npy", 2e-5)
close("inpaint 4-channel npy mask 20x20", t + "/in4.npy", r3 + "/latents.npy", 2e-5)
close("sdedit digits", t + "/sdedit.npy", r4 + "/images.npy", 1e-4)
meta = json.loads(Image.open(t + "/sdedit.png").text["diffrt"])
if meta.get("strength") != 0.6 or not meta.get("init_image", "").endswith("image.npy"):
    print("FAIL: PNG metadata lacks init_image/strength:", meta); bad += 1
sys.exit(bad)
PYEOF

# Bad input: rc in [1, 128), the message, no output.
expect() {  # expect <substring> <command...>
  local want=$1; shift
  rm -f "$T/o.npy" "$T/o.png"
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -qF -- "$want" <<<"$err" || [ -e "$T/o.npy" ] || [ -e "$T/o.png" ]; then
    echo "FAIL (rc=$rc): $* -> expected '$want' in: $err"; fails=$((fails + 1))
  fi
}
B=(sample --device cpu -q -m "$T/sd.drt" --prompt-embeds "$T/pos1.npy" --guidance-scale 1 --steps 4 -o "$T/o.png")
IMG=$I/img2img/sd1/ddim_s0.6_g7.5_b1/image.npy
expect "--strength must be in (0, 1]" "$BIN" "${B[@]}" --init-image "$IMG" --strength 0
expect "--strength must be in (0, 1]" "$BIN" "${B[@]}" --init-image "$IMG" --strength 1.5
expect "--strength needs --init-image" "$BIN" "${B[@]}" --strength 0.5
expect "--mask needs --init-image" "$BIN" "${B[@]}" --mask "$T/mask9.png"
expect "--init-image: $T/one_px.npy" "$BIN" "${B[@]}" --init-image "$T/one_px.npy"
expect "--init-image: $T/nan.npy: value" "$BIN" "${B[@]}" --init-image "$T/nan.npy"
expect "--init-image" "$BIN" "${B[@]}" --init-image "$T/missing.png"
expect "--mask" "$BIN" "${B[@]}" --init-image "$IMG" --mask "$T/nan.npy"
expect "strength" "$BIN" "${B[@]}" --init-image "$IMG" --strength 0.1  # int(4 * 0.1) = 0 steps
expect "inpainting UNet" "$BIN" sample --device cpu -q -m "$T/sd9.drt" --prompt-embeds "$T/pos1.npy" \
  --guidance-scale 1 --steps 4 -o "$T/o.png" --init-image "$IMG"
grep -q -- "--init-image" <<<"$("$BIN" sample --help)" || { echo "FAIL: --help lacks --init-image"; fails=$((fails + 1)); }
[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "img2img CLI: all passed"
