#!/usr/bin/env bash
# Fetches CLIP's public BPE vocabulary (49,408 tokens: 256 bytes, 256 bytes + "</w>", 48,894 merges,
# <|startoftext|>, <|endoftext|>) and writes it in the Hugging Face tokenizer layout that
# StableDiffusionPipeline loads (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json),
# once with SD1's padding (<|endoftext|>) and once with SD2's ("!"):
#   .clip_vocab/bpe_simple_vocab_16e6.txt.gz   the merges file as open_clip ships it
#   .clip_vocab/sd1/  .clip_vocab/sd2/          tokenizer folders
# The folder is git-ignored: the vocabulary is not committed. tests/clip_tokenizer_test.cpp runs its
# full-vocabulary cases when .clip_vocab/ exists (or DIFFRT_CLIP_VOCAB names such a folder) and skips
# them otherwise; tests/fixtures/make_clip_fixtures.py needs it to regenerate the committed fixtures.
# Source: `pip download --no-deps open_clip_torch` (a wheel from PyPI that carries
# open_clip/bpe_simple_vocab_16e6.txt.gz). Needs pip and python3 (standard library only).
# Usage: bash scripts/fetch_clip_vocab.sh [output-folder]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.clip_vocab}"
want_sha=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
gz="$out/bpe_simple_vocab_16e6.txt.gz"
mkdir -p "$out"
if ! echo "$want_sha  $gz" | sha256sum -c --status 2>/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  pip_cmd=(python3 -m pip)
  [ -x .venv/bin/pip ] && pip_cmd=(.venv/bin/pip)
  "${pip_cmd[@]}" download --no-deps --quiet open_clip_torch -d "$tmp"
  whl="$(ls "$tmp"/open_clip_torch-*.whl | head -n1)"
  python3 - "$whl" "$gz" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
PY
  echo "$want_sha  $gz" | sha256sum -c --status || { echo "fetch_clip_vocab: unexpected sha256 of $gz" >&2; exit 1; }
fi
python3 tests/fixtures/clip_vocab.py "$gz" "$out"
echo "fetch_clip_vocab: wrote $out/sd1 and $out/sd2" >&2
