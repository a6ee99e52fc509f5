#!/usr/bin/env python3
"""Refuses an #include that crosses diffrt's layers upward (docs/architecture.md).

    base -> kernels -> model -> runtime -> api -> front ends (cli, bench, serving)
    weights_converter -> model

Each top-level folder is one layer; a file may include its own layer and the layers this table allows.
Run by ctest (`layers`) and usable by hand: python3 scripts/check_layers.py [repo root]. Exit 1 lists every
offending line as path:line: layer -> included layer.
"""
import os
import re
import sys

ALLOWED = {
    "base": {"base"},
    "kernels": {"base", "kernels"},
    "model": {"base", "kernels", "model"},
    "weights_converter": {"base", "kernels", "model", "weights_converter"},
    "runtime": {"base", "kernels", "model", "runtime"},
    "api": {"base", "kernels", "model", "runtime", "api"},
    # Front ends: no backend code. The CLI reads model files (info) and converts (convert); everything that
    # runs a model goes through the API.
    "cli": {"base", "model", "weights_converter", "api", "cli"},
    # Kernel benchmarks call the kernels directly and read the GPU's facts from the runtime's CUDA context.
    "bench": {"base", "kernels", "runtime", "bench"},
    "serving": {"base", "api", "serving"},
}
SOURCE_EXT = (".h", ".hpp", ".cpp", ".cu", ".cuh", ".c")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    root = os.path.abspath(root)
    bad, checked = [], 0
    for layer, allowed in ALLOWED.items():
        top = os.path.join(root, layer)
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith(SOURCE_EXT):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                checked += 1
                with open(path, encoding="utf-8", errors="replace") as f:
                    for no, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(1).split("/")[0]
                        # Includes relative to the file's own folder ("x.h") stay in its layer.
                        if "/" not in m.group(1) or target not in ALLOWED and target != "tests":
                            continue
                        if target not in allowed:
                            bad.append(f"{rel}:{no}: {layer} includes {m.group(1)} ({target} is not below {layer})")
    if checked == 0:
        print("check_layers: no source files found under", root)
        return 1
    for b in bad:
        print(b)
    print(f"check_layers: {checked} files, {len(bad)} upward includes")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
