#!/usr/bin/env bash
# Prompt -> image through the real binary: convert a pipeline folder with a CLIP text encoder and tokenizer
# (tests/fixtures/sd/sd1_text, assembled from sd1_tiny + clip_tiny_sd1), `encode-prompt` against transformers'
# input_ids and last_hidden_state, `sample --prompt` against StableDiffusionPipeline(prompt=...) (one prompt
# with the default negative "", and two prompts x 2 images with negative prompts), and the argument errors.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SD=$SRC/tests/fixtures/sd
text_pipeline "$T/p"

grep -q "text encoder: .*model.safetensors" <<<"$("$BIN" convert "$T/p" -o "$T/sd.drt")"
grep -q "sample --prompt works" <<<"$("$BIN" info "$T/sd.drt")"

C=$SD/clip_tiny_sd1
mapfile -t PROMPTS < <($PY -c 'import json,sys; [print(p) for p in json.load(open(sys.argv[1]))]' "$C/prompts.json")
ARGS=(); for p in "${PROMPTS[@]}"; do ARGS+=(--prompt "$p"); done
"$BIN" encode-prompt -m "$T/sd.drt" "${ARGS[@]}" --print-ids -o "$T/pe.npy" --device cpu -q > "$T/ids.txt"
$PY - "$T/ids.txt" "$C/input_ids.npy" "$T/pe.npy" "$C/last_hidden_state.npy" <<'PYEOF'
import sys, json, numpy as np
ids = np.array([json.loads(l) for l in open(sys.argv[1])])
want = np.load(sys.argv[2])
assert ids.shape == want.shape and (ids == want).all(), (ids, want)
a, b = np.load(sys.argv[3]), np.load(sys.argv[4])
assert a.shape == b.shape, (a.shape, b.shape)
rel = np.linalg.norm(a - b) / np.linalg.norm(b); print("encode-prompt rel_l2", rel); assert rel < 1e-5
PYEOF

P=$SD/sd1_text/pipelines/prompt_ddim10_g7.5
"$BIN" sample -m "$T/sd.drt" --prompt "a photo of a cat" --sampler ddim --steps 10 --seed 30 --rng torch \
  -o "$T/s.npy" --device cpu -q | grep -qx "seed: 30"
P2=$SD/sd1_text/pipelines/prompts2_neg_x2_ddim10_g5
"$BIN" sample -m "$T/sd.drt" --prompt "a cat" --prompt "A Café in Zürich!!! 🐱 <|endoftext|> ΟΔΟΣ" \
  --negative-prompt blurry --negative-prompt "" -b 2 --guidance-scale 5 --sampler ddim --steps 10 --seed 31 \
  --rng torch -o "$T/s2.npy" --device cpu -q >/dev/null
$PY - "$T/s.npy" "$P/images.npy" "$T/s2.npy" "$P2/images.npy" <<'PYEOF'
import sys, numpy as np
for got, want in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    a, b = np.load(got), np.load(want)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.abs(a - b).max(); print("sample --prompt images max_abs", a.shape, err); assert err < 1e-3
PYEOF
"$BIN" sample -m "$T/sd.drt" --prompt "a cat" --steps 2 --seed 1 -o "$T/s.png" --device cpu -q >/dev/null
test -s "$T/s.png"

S=(sample -m "$T/sd.drt" --steps 2 --device cpu -q)
expect "give --prompt (or --prompt-embeds)" "$BIN" "${S[@]}" -o "$T/x.png"
expect "not both" "$BIN" "${S[@]}" --prompt a --prompt-embeds "$P/prompt_embeds.npy" -o "$T/x.png"
expect "--negative-prompt needs --prompt" "$BIN" "${S[@]}" --negative-prompt a --prompt-embeds "$P/prompt_embeds.npy" -o "$T/x.png"
expect "3 negative prompts for 2 prompts" "$BIN" "${S[@]}" --prompt a --prompt b --negative-prompt x \
  --negative-prompt y --negative-prompt z -o "$T/x.png"
expect "not valid UTF-8" "$BIN" "${S[@]}" --prompt $'caf\xe9' -o "$T/x.png"
expect "not valid UTF-8" "$BIN" encode-prompt -m "$T/sd.drt" --prompt $'\xff' --print-ids
expect "give -o out.npy and/or --print-ids" "$BIN" encode-prompt -m "$T/sd.drt" --prompt a
"$BIN" convert "$T/p" --no-text-encoder -o "$T/bare.drt" -q
expect "no text encoder" "$BIN" sample -m "$T/bare.drt" --prompt a --steps 2 -o "$T/x.png"
expect "no text encoder and tokenizer" "$BIN" encode-prompt -m "$T/bare.drt" --prompt a --print-ids
"$BIN" convert "$SRC/tests/fixtures/models/cifar_like" -o "$T/c.drt" -q
expect "not text-conditioned" "$BIN" sample -m "$T/c.drt" --prompt a -o "$T/x.png"
test ! -e "$T/x.png" && test ! -e "$T/x.npy"
echo "prompt cli ok"
