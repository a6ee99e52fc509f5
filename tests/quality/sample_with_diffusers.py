#!/usr/bin/env python3
"""Sample the digits DDPM (models/digits) with diffusers, as a reference for
diffrt and as input for tests/quality/digit_quality.py.

Classifier-free guidance is done by hand: each step runs the UNet on the batch
[null(B); cond(B)] (class 10 = null), then eps = u + s * (c - u).

Writes (NHWC float32 in [0,1], like diffusers output_type="np"):
  OUTDIR/cond.npy      [10*per_class,16,16,1]  guided samples, classes 0..9 in order
  OUTDIR/labels.npy    requested labels  (also labels.json)
  OUTDIR/uncond.npy    [n_uncond,16,16,1]      unconditional samples (null class, no guidance)
  --grid PATH          optional PNG: one row per class, --grid-cols columns

Example:
  .venv/bin/python tests/quality/sample_with_diffusers.py --model models/digits \
      --scheduler ddim --no-clip --steps 50 --guidance 3 --per-class 10 --n-uncond 100 --out /tmp/q

Note: deterministic DDIM (eta 0) with clip_sample=True degrades badly at >= 50 steps for this
model (clipped x0 + unclipped eps); use --no-clip for DDIM. DDPM works with clipping.
  .venv/bin/python tests/quality/digit_quality.py --samples-cond /tmp/q/cond.npy \
      --labels-cond /tmp/q/labels.npy --samples-uncond /tmp/q/uncond.npy
"""
import argparse
import json
import os

import numpy as np
import torch
import safetensors.torch  # noqa: F401  (diffusers 0.27 from_pretrained needs the submodule imported)

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

NULL_CLASS = 10


@torch.no_grad()
def sample(unet, sched, labels, steps, guidance, gen, batch=100, eta=0.0):
    """labels: LongTensor [N] (10 = unconditional). Returns NHWC float32 [0,1]."""
    outs = []
    size = unet.config.sample_size
    for s in range(0, len(labels), batch):
        y = labels[s:s + batch]
        b = len(y)
        x = torch.randn((b, unet.config.in_channels, size, size), generator=gen)
        sched.set_timesteps(steps)
        use_cfg = guidance != 1.0 and bool((y != NULL_CLASS).any())
        for t in sched.timesteps:
            tt = torch.full((b,), int(t), dtype=torch.long)
            if use_cfg:
                eps = unet(torch.cat([x, x]), torch.cat([tt, tt]),
                           class_labels=torch.cat([torch.full_like(y, NULL_CLASS), y])).sample
                eu, ec = eps.chunk(2)
                eps = eu + guidance * (ec - eu)
            else:
                eps = unet(x, tt, class_labels=y).sample
            if isinstance(sched, DDIMScheduler):
                x = sched.step(eps, t, x, eta=eta, generator=gen).prev_sample
            else:
                x = sched.step(eps, t, x, generator=gen).prev_sample
        outs.append((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy())
    return np.concatenate(outs, 0).astype(np.float32)


def save_grid(imgs, rows, cols, path, scale=4, pad=2):
    from PIL import Image

    h, w = imgs.shape[1:3]
    H = rows * (h * scale + pad) + pad
    W = cols * (w * scale + pad) + pad
    canvas = np.full((H, W), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            im = (imgs[r * cols + c, :, :, 0] * 255).round().astype(np.uint8)
            im = np.kron(im, np.ones((scale, scale), np.uint8))
            y0, x0 = pad + r * (h * scale + pad), pad + c * (w * scale + pad)
            canvas[y0:y0 + h * scale, x0:x0 + w * scale] = im
    Image.fromarray(canvas, "L").save(path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.normpath(os.path.join(here, "..", "..", "models", "digits")))
    ap.add_argument("--scheduler", choices=["ddim", "ddpm"], default="ddim")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--n-uncond", type=int, default=100)
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    ap.add_argument("--no-clip", action="store_true", help="sample with clip_sample=False")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/digits_samples")
    ap.add_argument("--grid", default=None, help="write a per-class grid PNG of the conditional samples")
    ap.add_argument("--grid-cols", type=int, default=8)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    unet = UNet2DModel.from_pretrained(args.model, low_cpu_mem_usage=False).eval()
    base = DDPMScheduler.from_pretrained(args.model)
    cfg = dict(base.config)
    if args.no_clip:
        cfg["clip_sample"] = False
    sched = DDIMScheduler.from_config(cfg) if args.scheduler == "ddim" else DDPMScheduler.from_config(cfg)
    gen = torch.Generator().manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    labels = torch.arange(10).repeat_interleave(args.per_class)
    cond = sample(unet, sched, labels, args.steps, args.guidance, gen, eta=args.eta)
    np.save(os.path.join(args.out, "cond.npy"), cond)
    np.save(os.path.join(args.out, "labels.npy"), labels.numpy())
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(labels.tolist(), f)
    if args.n_uncond > 0:
        unc = sample(unet, sched, torch.full((args.n_uncond,), NULL_CLASS, dtype=torch.long), args.steps, 1.0, gen, eta=args.eta)
        np.save(os.path.join(args.out, "uncond.npy"), unc)
    if args.grid:
        cols = min(args.grid_cols, args.per_class)
        idx = [c * args.per_class + j for c in range(10) for j in range(cols)]
        save_grid(cond[idx], 10, cols, args.grid)
    print(f"wrote {args.out}: cond {cond.shape} (scheduler {args.scheduler}, {args.steps} steps, guidance {args.guidance})"
          + (f", uncond ({args.n_uncond})" if args.n_uncond > 0 else "") + (f", grid {args.grid}" if args.grid else ""))


if __name__ == "__main__":
    main()
