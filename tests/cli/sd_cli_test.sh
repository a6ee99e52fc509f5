#!/usr/bin/env bash
# Stable-Diffusion-style models through the real binary: convert a pipeline folder, eval with
# --encoder-hidden-states, decode latents, sample from prompt embeddings (checked against
# diffusers' StableDiffusionPipeline outputs), and the argument errors a user can hit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
FX=$SRC/tests/fixtures/sd/sd1_tiny

"$BIN" convert "$FX/pipeline" -o "$T/sd.drt" -q
grep -q "unet2d_condition" <<<"$("$BIN" info "$T/sd.drt")"

U=$FX/unet_case1
"$BIN" eval -m "$T/sd.drt" --sample "$U/sample.npy" --timesteps "$U/timesteps.npy" \
  --encoder-hidden-states "$U/encoder_hidden_states.npy" -o "$T/e.npy" -q
$PY - "$T/e.npy" "$U/out.npy" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
rel = np.linalg.norm(a - b) / np.linalg.norm(b); print("sd eval rel_l2", rel); assert rel < 1e-5
PYEOF

V=$FX/vae_decode
"$BIN" decode -m "$T/sd.drt" --latents "$V/latents.npy" -o "$T/d.npy" -q
"$BIN" decode -m "$T/sd.drt" --latents "$V/latents.npy" -o "$T/d.png" -q
$PY - "$T/d.npy" "$V/image.npy" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max(); print("sd decode max_abs", err); assert err < 1e-5
PYEOF

P=$FX/pipelines/ddim10_g7.5
"$BIN" sample -m "$T/sd.drt" --prompt-embeds "$P/prompt_embeds.npy" --negative-prompt-embeds \
  "$P/negative_prompt_embeds.npy" --guidance-scale 7.5 --sampler ddim --steps 10 --seed 10 --rng torch \
  -H 16 -W 16 -o "$T/s.npy" -q | grep -qx "seed: 10"
"$BIN" sample -m "$T/sd.drt" --prompt-embeds "$P/prompt_embeds.npy" --negative-prompt-embeds \
  "$P/negative_prompt_embeds.npy" --sampler ddim --steps 10 --seed 10 --rng torch --output-type latent \
  -o "$T/l.npy" -q >/dev/null
$PY - "$T/s.npy" "$P/images.npy" "$T/l.npy" "$P/latents.npy" "$P/meta.json" <<'PYEOF'
import sys, json, numpy as np
meta = json.load(open(sys.argv[5]))
assert meta["seed"] == 10 and meta["steps"] == 10 and meta["guidance_scale"] == 7.5, meta
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max(); print("sd sample images max_abs", err); assert err < 1e-3
l, m = np.load(sys.argv[3]), np.load(sys.argv[4])
assert l.shape == m.shape, (l.shape, m.shape)
rel = np.abs(l - m).max() / np.abs(m).max()  # sd1 latents grow to std ~10 with random weights
print("sd sample latents max_abs/max (default 7.5 guidance)", rel); assert rel < 1e-4
PYEOF
"$BIN" sample -m "$T/sd.drt" --prompt-embeds "$P/prompt_embeds.npy" --negative-prompt-embeds \
  "$P/negative_prompt_embeds.npy" --steps 2 --seed 1 -o "$T/s.png" -q >/dev/null
test -s "$T/s.png"

# Errors: each names the problem, exits non-zero, writes nothing.
S=(sample -m "$T/sd.drt" --steps 2 -q)
expect "give --prompt-embeds" "$BIN" "${S[@]}" -o "$T/x.png"
expect "negative prompt embeddings" "$BIN" "${S[@]}" --prompt-embeds "$P/prompt_embeds.npy" -o "$T/x.png"
expect "cross_attention_dim" "$BIN" "${S[@]}" --prompt-embeds "$SRC/tests/fixtures/sd/sd2_tiny/pipelines/ddpm20_g3/prompt_embeds.npy" \
  --guidance-scale 1 -o "$T/x.png"
expect "must have the shape of prompt_embeds" "$BIN" "${S[@]}" --prompt-embeds "$P/prompt_embeds.npy" \
  --negative-prompt-embeds "$U/encoder_hidden_states.npy" -o "$T/x.png"
expect "multiples of the VAE's factor" "$BIN" "${S[@]}" --prompt-embeds "$P/prompt_embeds.npy" --guidance-scale 1 \
  -H 17 -W 16 -o "$T/x.png"
expect "writes .npy only" "$BIN" "${S[@]}" --prompt-embeds "$P/prompt_embeds.npy" --output-type latent -o "$T/x.png"
expect "text embeddings [batch, tokens, dim]" "$BIN" "${S[@]}" --prompt-embeds "$V/latents.npy" -o "$T/x.png"
expect "give --encoder-hidden-states" "$BIN" eval -m "$T/sd.drt" --sample "$U/sample.npy" --timesteps "$U/timesteps.npy" -o "$T/x.npy"
"$BIN" convert "$SRC/tests/fixtures/models/cifar_like" -o "$T/c.drt" -q
expect "no VAE decoder" "$BIN" decode -m "$T/c.drt" --latents "$V/latents.npy" -o "$T/x.npy"
expect "not text-conditioned" "$BIN" sample -m "$T/c.drt" --prompt-embeds "$P/prompt_embeds.npy" -o "$T/x.png"
expect "expected float32 [N, 4, h, w]" "$BIN" decode -m "$T/sd.drt" --latents "$P/prompt_embeds.npy" -o "$T/x.npy"
test ! -e "$T/x.png" && test ! -e "$T/x.npy"
echo "sd cli ok"
