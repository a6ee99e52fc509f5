#!/usr/bin/env bash
# Downloads the Python wheels that scripts/peer_compare.py needs on the GPU machine, which has PyTorch but no
# diffusers and no network. Run HERE (a machine with network); the GPU pass carries the folder and installs
# it there into a private target dir, so the image's own packages (huggingface-hub 1.x, transformers 5.x)
# are not touched:
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#         --target /tmp/peer_site .whl/*.whl && export PYTHONPATH=/tmp/peer_site
# (peer_compare.py --wheels .whl does exactly this itself when diffusers is not importable.)
#
# Usage: scripts/vendor_wheels.sh [DEST]        (default DEST: .whl at the repository root)
# The wheels are NOT committed: DEST is added to .git/info/exclude when it lies inside the repository.
# Target: CPython 3.12 on x86-64 Linux (the GPU image's python3, per .library/device/KINDS.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.whl}"
PY="${PYTHON:-python3}"
PYVER="${PEER_PYTHON_VERSION:-3.12}"
SAFETENSORS_VERSION="${SAFETENSORS_VERSION:-0.4.5}"
mkdir -p "$DEST"

# Exactly one version of each package (two stop a --no-deps install).
PKGS=(
  "diffusers==0.27.2"
  "huggingface-hub==0.22.2"        # diffusers 0.27.2 imports cached_download, removed in hub 0.26
  "safetensors==${SAFETENSORS_VERSION}"
  "importlib-metadata==7.1.0"      # a declared requirement of diffusers 0.27.2
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)
plat_args=()
for p in "${PLATFORMS[@]}"; do plat_args+=(--platform "$p"); done

for pkg in "${PKGS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${plat_args[@]}" -d "$DEST" "$pkg"
done

# Keep the folder out of git when it is inside the repository.
case "$DEST" in
  "$ROOT"/*)
    rel="/${DEST#"$ROOT"/}/"
    excl="$ROOT/.git/info/exclude"
    if [ -d "$ROOT/.git/info" ] && ! grep -qxF "$rel" "$excl" 2>/dev/null; then echo "$rel" >>"$excl"; fi
    ;;
esac

echo "wheels in $DEST:"
ls -1 "$DEST"
du -sh "$DEST"
