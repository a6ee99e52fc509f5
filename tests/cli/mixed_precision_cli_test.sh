#!/usr/bin/env bash
# `diffrt convert` component dtypes through the real binary (mixed precision per component, docs/format.md):
# --dtype fp16 keeps the force_upcast VAE in fp32, --vae-dtype / --text-encoder-dtype choose per component, bad
# values and flags for components that are not converted are refused with clear errors (and write nothing), and
# the mixed model samples from a prompt on the CPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
text_pipeline "$T/p"

out=$("$BIN" convert "$T/p" -o "$T/mixed.drt" --dtype fp16 2>"$T/warn.txt")
grep -q "tensors (fp16)" <<<"$out" || { echo "$out"; exit 1; }
grep -q "vae decoder: .* fp32)" <<<"$out" || { echo "VAE not fp32: $out"; exit 1; }
grep -q "text encoder: .* fp16) + tokenizer" <<<"$out" || { echo "$out"; exit 1; }
if grep -q force_upcast "$T/warn.txt"; then echo "unexpected warning: $(cat "$T/warn.txt")"; exit 1; fi

out=$("$BIN" convert "$T/p" -o "$T/m2.drt" --dtype fp16 --vae-dtype bf16 --text-encoder-dtype fp32 2>/dev/null)
grep -q "vae decoder: .* bf16)" <<<"$out" && grep -q "text encoder: .* fp32) + tokenizer" <<<"$out" || { echo "$out"; exit 1; }
# An fp16 VAE on request: stored, with the force_upcast warning.
"$BIN" convert "$T/p" -o "$T/m3.drt" --dtype fp16 --vae-dtype fp16 -q 2>"$T/warn.txt"
grep -q "force_upcast is set" "$T/warn.txt" || { echo "no warning: $(cat "$T/warn.txt")"; exit 1; }

"$BIN" sample -m "$T/mixed.drt" --prompt "a cat" --steps 2 --seed 1 -o "$T/s.png" --device cpu -q >/dev/null
test -s "$T/s.png"

expect "--vae-dtype" "$BIN" convert "$T/p" -o "$T/x.drt" --vae-dtype fp64
expect "--text-encoder-dtype" "$BIN" convert "$T/p" -o "$T/x.drt" --text-encoder-dtype auto
expect "--vae-dtype bf16 given, but no VAE is converted (--no-vae)" \
  "$BIN" convert "$T/p" -o "$T/x.drt" --no-vae --vae-dtype bf16
expect "--text-encoder-dtype fp16 given, but no text encoder is converted (--no-text-encoder)" \
  "$BIN" convert "$T/p" -o "$T/x.drt" --no-text-encoder --text-encoder-dtype fp16
expect "no VAE is converted (a UNet2DModel has none)" \
  "$BIN" convert "$SRC/tests/fixtures/models/cifar_like" -o "$T/x.drt" --vae-dtype fp32
test ! -e "$T/x.drt"
echo "mixed precision cli ok"
