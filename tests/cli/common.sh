# Sourced by the tests/cli/*_test.sh scripts (after `set -euo pipefail`): the binary and source tree from the
# environment ctest sets, a temporary folder $T removed on exit, and expect().
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}; PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

expect() {  # expect <message part> <command...>: the command must fail, and its output contain the message part
  local want=$1; shift
  if out=$("$@" 2>&1); then echo "accepted: $*"; exit 1; fi
  grep -qF -- "$want" <<<"$out" || { echo "expected '$want', got: $out"; exit 1; }
}

text_pipeline() {  # text_pipeline <dir>: assembles the sd1_text pipeline folder (sd1_tiny + clip_tiny_sd1) in <dir>
  local sd=$SRC/tests/fixtures/sd
  mkdir -p "$1"
  cp -r "$sd/sd1_tiny/pipeline/scheduler" "$sd/sd1_tiny/pipeline/unet" "$sd/sd1_tiny/pipeline/vae" \
    "$sd/clip_tiny_sd1/text_encoder" "$sd/clip_tiny_sd1/tokenizer" "$1/"
  cp "$sd/sd1_text/model_index.json" "$1/"
}
