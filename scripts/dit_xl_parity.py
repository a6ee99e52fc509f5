#!/usr/bin/env python3
"""DiT-XL/2 forward parity at full size, by hand (too slow for ctest: diffusers takes ~3 min on 2 CPU cores): the
published facebook/DiT-XL-2-256 (or -512) architecture with random weights (scripts/make_bench_models.py), converted
by `diffrt convert`, one `diffrt eval` on the CPU against diffusers' Transformer2DModel on the same input.

    .venv/bin/python scripts/dit_xl_parity.py --diffrt build-cpu/diffrt [--res 256] [--work /tmp/dit_xl]

Prints rel L2 and max abs; exits 1 above 1e-5 rel L2. Measured on this repository's CPU backend (fp16 weights widened
to fp32 on both sides): rel L2 7.7e-7, max abs 2.1e-6 at 256 px.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffrt", required=True)
    ap.add_argument("--res", type=int, choices=[256, 512], default=256)
    ap.add_argument("--work", default="/tmp/dit_xl")
    a = ap.parse_args()
    name = f"dit-xl2-{a.res}"
    folder = os.path.join(a.work, name)
    if not os.path.isfile(os.path.join(folder, "transformer", "diffusion_pytorch_model.safetensors")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_bench_models.py"), a.work, "--models", name], check=True)
    drt = os.path.join(a.work, f"{name}.drt")
    subprocess.run([a.diffrt, "convert", folder, "-o", drt, "--dtype", "fp16", "-q", "--no-vae"], check=True)
    s = a.res // 8
    rng = np.random.default_rng(0)
    np.save(os.path.join(a.work, "x.npy"), rng.standard_normal((1, 4, s, s)).astype(np.float32))
    np.save(os.path.join(a.work, "t.npy"), np.array([500], dtype=np.int64))
    np.save(os.path.join(a.work, "y.npy"), np.array([207], dtype=np.int64))
    subprocess.run([a.diffrt, "eval", "-m", drt, "--sample", os.path.join(a.work, "x.npy"), "--timesteps",
                    os.path.join(a.work, "t.npy"), "--class-labels", os.path.join(a.work, "y.npy"), "-o",
                    os.path.join(a.work, "out.npy"), "--device", "cpu", "-q"], check=True)
    import torch
    import safetensors.torch  # noqa: F401  (diffusers 0.27 needs it imported)
    from diffusers import Transformer2DModel
    tr = Transformer2DModel.from_pretrained(os.path.join(folder, "transformer"), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = tr(torch.from_numpy(np.load(os.path.join(a.work, "x.npy"))), timestep=torch.tensor([500]),
                 class_labels=torch.tensor([207])).sample.numpy()
    got = np.load(os.path.join(a.work, "out.npy"))
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    print(f"{name}: diffrt CPU vs diffusers rel L2 {rel:.3g}, max abs {np.abs(got - ref).max():.3g} "
          f"(output std {ref.std():.3f})")
    return 0 if rel <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
