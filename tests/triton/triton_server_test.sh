#!/usr/bin/env bash
# The Triton backend end to end: a real tritonserver (from .venv-triton, made by scripts/setup_triton.sh)
# on 127.0.0.1 with the built libtriton_diffrt.so, queried by the real tritonclient over HTTP and gRPC
# (tests/triton/triton_server_test.py says what is checked). Exits 77 (ctest SKIP) when the venv is missing.
# Usage: triton_server_test.sh <backend-directory> <diffrt binary>
set -euo pipefail
BACKENDS=${1:?backend directory}; BIN=${2:?diffrt binary}
SRC=${DIFFRT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
VENV=${DIFFRT_TRITON_VENV:-$SRC/.venv-triton}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pytriton, tritonclient.grpc, tritonclient.http" 2>/dev/null; then
  echo "SKIP: no Triton venv at $VENV (make it with: bash scripts/setup_triton.sh)"
  exit 77
fi
test -f "$BACKENDS/diffrt/libtriton_diffrt.so" || { echo "no $BACKENDS/diffrt/libtriton_diffrt.so"; exit 1; }
exec "$VENV/bin/python" "$SRC/tests/triton/triton_server_test.py" --backends "$BACKENDS" --diffrt "$BIN" --source "$SRC"
