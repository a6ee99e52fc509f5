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


def self_test() -> int:
    """The checker must catch an upward include and pass a clean tree (so the ctest can fail)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        def write(rel, text):
            os.makedirs(os.path.join(d, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(d, rel), "w") as f:
                f.write(text)
        write("base/a.h", '#include "base/b.h"\n')
        write("model/m.h", '#include "kernels/k.h"\n#include "base/a.h"\n')
        write("cli/main.cpp", '#include "api/diffrt.hpp"\n')
        if check(d, quiet=True) != (3, 0):
            print("check_layers self-test: a clean tree was refused")
            return 1
        write("model/bad.cpp", '#include "runtime/plan.h"\n')
        write("cli/bad.cpp", '#  include "runtime/engine/engine.h"\n')
        if check(d, quiet=True) != (5, 2):
            print("check_layers self-test: upward includes were not caught")
            return 1
    print("check_layers self-test: ok")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    checked, bad = check(os.path.abspath(root))
    return 1 if bad or checked == 0 else 0


def check(root, quiet=False):
    """Returns (files checked, upward includes) and prints the offending lines."""
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
    if not quiet:
        for b in bad:
            print(b)
        print(f"check_layers: {checked} files, {len(bad)} upward includes")
    return checked, len(bad)


if __name__ == "__main__":
    sys.exit(main())
