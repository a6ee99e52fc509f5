#!/usr/bin/env bash
# Makes the Python environment that serves diffrt with NVIDIA Triton Inference Server on this machine:
# a venv (default .venv-triton, gitignored) with nvidia-pytriton 0.7.0, whose wheel carries a complete
# `tritonserver` 2.51 binary (TRITONBACKEND API 1.19; runs CPU-only), and tritonclient[http,grpc].
# Idempotent: an existing venv with both packages is kept. Prints the tritonserver path.
# Usage: bash scripts/setup_triton.sh [venv-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-triton}
PY=${DIFFRT_TRITON_PYTHON:-/usr/bin/python3}

server() { "$VENV/bin/python" - <<'PYEOF'
import os, pytriton
print(os.path.join(os.path.dirname(pytriton.__file__), "tritonserver", "bin", "tritonserver"))
PYEOF
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import pytriton, tritonclient.http, tritonclient.grpc, numpy" 2>/dev/null; then
  server
  exit 0
fi
if ! "$PY" -c "import venv, ensurepip" 2>/dev/null; then
  echo "setup_triton: installing python3-venv" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# pytriton 0.7.0 pins tritonclient; numpy < 2 matches the wheels it was built against.
"$VENV/bin/python" -m pip install -q "nvidia-pytriton==0.7.0" "tritonclient[http,grpc]" "numpy<2"
S=$(server)
test -x "$S" || { echo "setup_triton: no tritonserver binary at $S" >&2; exit 1; }
echo "$S"
