#!/usr/bin/env bash
# Installs the build dependencies (Debian packages) and builds diffrt into ./build.
# The CUDA toolkit is used when present (/usr/local/cuda); without it the CPU backend builds alone.
# Usage: bash scripts/setup.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcli11-dev libpng-dev libpcre2-dev libicu-dev libgtest-dev
      libbenchmark-dev python3 python3-numpy python3-sklearn)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
# The Triton Inference Server venv (serving/triton/README.md) for the Triton test; without it (offline, or
# DIFFRT_NO_TRITON=1) that test is skipped.
if [ -z "${DIFFRT_NO_TRITON:-}" ]; then
  bash scripts/setup_triton.sh >/dev/null || echo "setup: no Triton venv (scripts/setup_triton.sh failed); the Triton test will be skipped" >&2
fi
