#!/usr/bin/env python3
"""Train a small class-conditional DDPM (diffusers UNet2DModel) on the sklearn
handwritten digits, upsampled to 16x16, with classifier-free guidance support.

Outputs (in --out, default models/digits):
  config.json, diffusion_pytorch_model.safetensors   (EMA weights)
  scheduler_config.json                              (DDPMScheduler)
  loss.csv, loss.png, README.md

Data:   sklearn.datasets.load_digits (1,797 8x8 images, values 0..16; UCI ML
        repository "Optical Recognition of Handwritten Digits", CC BY 4.0).
Prep:   x/16 -> [0,1], bilinear upsample 8x8 -> 16x16 (align_corners=False),
        scale to [-1,1]. Augmentation: random integer shift of -1..1 px in x
        and y at 16x16 (background filled with -1).
Labels: 0..9; class 10 is the "null" class used for classifier-free guidance
        (labels are replaced by 10 with probability --p-uncond).

Usage (CPU, one thread so that other work keeps a core):
  .venv/bin/python scripts/train_digits.py --steps 2400 --batch-size 64
"""
import argparse
import copy
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import safetensors.torch  # noqa: F401  (diffusers 0.27 save_pretrained needs the submodule imported)

from diffusers import DDPMScheduler, UNet2DModel

NULL_CLASS = 10
NUM_CLASS_EMBEDS = 11
IMG = 16


def build_model():
    return UNet2DModel(
        sample_size=IMG,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=8,
        time_embedding_type="positional",
        num_class_embeds=NUM_CLASS_EMBEDS,
    )


def build_scheduler():
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        variance_type="fixed_small",
        clip_sample=True,
        clip_sample_range=1.0,
    )


def load_data():
    """Returns (images [N,1,16,16] float32 in [-1,1], labels [N] int64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8] in [0,1]
    x = F.interpolate(x, size=(IMG, IMG), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0) * 2.0 - 1.0
    y = torch.from_numpy(d.target.astype(np.int64))
    return x, y


def random_shift(x, gen, max_shift=1):
    """Shift each image by an integer (dy, dx) in [-max_shift, max_shift]; fill with -1."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    p = max_shift
    xp = F.pad(x, (p, p, p, p), value=-1.0)
    sh = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(sh[i, 0]), int(sh[i, 1])
        out[i] = xp[i, :, dy:dy + IMG, dx:dx + IMG]
    return out


def lr_at(step, total, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    prog = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * prog)))


@torch.no_grad()
def ema_update(ema, model, decay):
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def save_all(ema, scheduler, out):
    os.makedirs(out, exist_ok=True)
    ema.save_pretrained(out, safe_serialization=True)
    scheduler.save_pretrained(out)


def plot_loss(csv_path, png_path):
    try:
        if "/usr/lib/python3/dist-packages" not in sys.path:
            sys.path.append("/usr/lib/python3/dist-packages")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # pragma: no cover
        print(f"matplotlib unavailable ({e}); skipping {png_path}")
        return False
    steps, losses = [], []
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss (epsilon)")
    ax.set_yscale("log")
    ax.set_title("diffrt digits DDPM: training loss (window mean)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "digits"))
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--max-shift", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-every", type=int, default=1000, help="save intermediate EMA weights every N steps (0: off)")
    ap.add_argument("--ckpt-dir", default="/tmp/digits_ckpt")
    ap.add_argument("--init-from", default=None,
                    help="continue from a saved model folder (its weights initialise both model and EMA)")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="safety stop: end training early (saving EMA weights) after this many minutes (0: off); "
                         "a run that stops early is recorded as truncated in train_stats.json")
    args = ap.parse_args()
    out = os.path.normpath(args.out)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x_all, y_all = load_data()
    n = x_all.shape[0]
    model = build_model()
    if args.init_from:  # warm start: a second training phase continues from the saved EMA weights
        import safetensors.torch
        state = safetensors.torch.load_file(os.path.join(args.init_from, "diffusion_pytorch_model.safetensors"))
        model.load_state_dict(state, strict=True)
    model.train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    scheduler = build_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod
    T = scheduler.config.num_train_timesteps

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.999))
    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, "loss.csv")
    fcsv = open(csv_path, "w", newline="")
    w = csv.writer(fcsv)
    w.writerow(["step", "loss", "lr", "elapsed_s"])
    print(f"data {tuple(x_all.shape)}  params {n_params}  steps {args.steps}  bs {args.batch_size}  threads {args.threads}", flush=True)

    perm = torch.randperm(n, generator=gen)
    pos = 0
    t0 = time.time()
    win = []
    last_losses = []
    steps_done = 0
    truncated = False
    for step in range(args.steps):
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            truncated = True
            print(f"time budget of {args.max_minutes} min reached at step {step}; stopping early", flush=True)
            break
        if pos + args.batch_size > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        idx = perm[pos:pos + args.batch_size]
        pos += args.batch_size
        x0 = random_shift(x_all[idx], gen, args.max_shift)
        y = y_all[idx].clone()
        drop = torch.rand(y.shape[0], generator=gen) < args.p_uncond
        y[drop] = NULL_CLASS
        t = torch.randint(0, T, (y.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise

        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        pred = model(xt, t, class_labels=y).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        ema_update(ema, model, decay)

        steps_done = step + 1
        lv = loss.item()
        win.append(lv)
        last_losses.append(lv)
        last_losses = last_losses[-200:]
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            el = time.time() - t0
            m = float(np.mean(win))
            w.writerow([step + 1, f"{m:.6f}", f"{lr:.3e}", f"{el:.1f}"])
            fcsv.flush()
            eta = el / (step + 1) * (args.steps - step - 1)
            print(f"step {step + 1:6d}  loss {m:.5f}  lr {lr:.2e}  {el / (step + 1):.3f}s/step  elapsed {el / 60:.1f}m  eta {eta / 60:.1f}m", flush=True)
            win = []
        if args.ckpt_every and (step + 1) % args.ckpt_every == 0 and step + 1 < args.steps:
            ck = args.ckpt_dir
            save_all(ema, scheduler, ck)
            print(f"  checkpoint (EMA) -> {ck}", flush=True)
    if win:
        w.writerow([steps_done, f"{float(np.mean(win)):.6f}", f"{lr:.3e}", f"{time.time() - t0:.1f}"])
    fcsv.close()
    train_s = time.time() - t0

    save_all(ema, scheduler, out)
    plot_loss(csv_path, os.path.join(out, "loss.png"))
    stats = {
        "params": n_params,
        "steps": steps_done,
        "steps_planned": args.steps,
        "truncated": truncated,
        "batch_size": args.batch_size,
        "epochs": round(steps_done * args.batch_size / n, 1),
        "train_seconds": round(train_s, 1),
        "final_loss_last200_mean": round(float(np.mean(last_losses)), 5),
        "lr": args.lr,
        "warmup": args.warmup,
        "ema_decay": args.ema_decay,
        "p_uncond": args.p_uncond,
        "max_shift": args.max_shift,
        "seed": args.seed,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "train_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats, indent=2), flush=True)


if __name__ == "__main__":
    main()
