#!/usr/bin/env python3
"""Random-weight diffusers UNet2DModel checkpoints with the published architectures of
google/ddpm-cifar10-32 and google/ddpm-celebahq-256, for benchmarking (the weights are random: the
images are noise, the timings are real).

Writes, per model, a diffusers pipeline folder:
    <out>/<name>/model_index.json
    <out>/<name>/unet/config.json
    <out>/<name>/unet/diffusion_pytorch_model.safetensors     (fp32)
    <out>/<name>/scheduler/scheduler_config.json              (DDPMScheduler, as published)
    <out>/<name>/scheduler_ddim/scheduler_config.json         (DDIMScheduler with the same betas)

Needs only numpy or torch (no diffusers, no safetensors package): the parameter names and shapes are
enumerated here from the UNet2DModel structure of diffusers 0.27.2 and the safetensors file is written
directly. With diffusers importable, --check instantiates UNet2DModel from the same config, asserts that
the names and shapes match exactly, loads the folder with from_pretrained and runs one forward pass.

Configs: /work/shared/research/diffusers_spec.md section 8 (cifar10-32, "high confidence", 35,746,307
parameters) and the brief for celebahq-256 (block_out_channels [128,128,256,256,512,512], attention at 16x16,
113.7 M parameters per perf_anchors.md section 0). Scheduler configs are those published with the models
(cifar: fixed_large per the spec; celebahq: fixed_small, recalled, not re-read).

Usage: make_bench_models.py OUT_DIR [--models cifar10-32,celebahq-256] [--seed 0] [--check]
"""
import argparse
import json
import math
import os
import struct
import sys

UNET_COMMON = {
    "_class_name": "UNet2DModel",
    "_diffusers_version": "0.27.2",
    "act_fn": "silu",
    "add_attention": True,
    "attention_head_dim": None,
    "attn_norm_num_groups": None,
    "center_input_sample": False,
    "class_embed_type": None,
    "downsample_padding": 0,
    "downsample_type": "conv",
    "dropout": 0.0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "num_train_timesteps": None,
    "out_channels": 3,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "upsample_type": "conv",
}

MODELS = {
    "ddpm-cifar10-32": {
        "unet": dict(UNET_COMMON, sample_size=32, block_out_channels=[128, 256, 256, 256],
                     down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                     up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
        "variance_type": "fixed_large",
        "expected_params": 35746307,
    },
    "ddpm-celebahq-256": {
        "unet": dict(UNET_COMMON, sample_size=256, block_out_channels=[128, 128, 256, 256, 512, 512],
                     down_block_types=["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                                       "AttnDownBlock2D", "DownBlock2D"],
                     up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                                     "UpBlock2D"]),
        "variance_type": "fixed_small",
        "expected_params": 113673219,  # perf_anchors.md section 0: 113.67 M; --check: equals diffusers
    },
}
ALIASES = {"cifar10-32": "ddpm-cifar10-32", "celebahq-256": "ddpm-celebahq-256"}


def ddpm_scheduler_config(variance_type):
    return {
        "_class_name": "DDPMScheduler", "_diffusers_version": "0.27.2",
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "variance_type": variance_type, "clip_sample": True,
        "prediction_type": "epsilon", "thresholding": False, "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0, "sample_max_value": 1.0, "timestep_spacing": "leading", "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }


def ddim_scheduler_config():
    return {
        "_class_name": "DDIMScheduler", "_diffusers_version": "0.27.2",
        "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
        "trained_betas": None, "clip_sample": True, "set_alpha_to_one": True, "steps_offset": 0,
        "prediction_type": "epsilon", "thresholding": False, "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0, "sample_max_value": 1.0, "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
    }


# ---- parameter enumeration (diffusers 0.27.2 UNet2DModel, conv up/down sampling, positional time) -------

def unet2d_param_shapes(cfg):
    """Ordered list of (name, shape) of UNet2DModel's state dict for `cfg`."""
    out = []

    def conv(name, cout, cin, k):
        out.append((name + ".weight", (cout, cin, k, k)))
        out.append((name + ".bias", (cout,)))

    def lin(name, cout, cin):
        out.append((name + ".weight", (cout, cin)))
        out.append((name + ".bias", (cout,)))

    def norm(name, c):
        out.append((name + ".weight", (c,)))
        out.append((name + ".bias", (c,)))

    def resnet(name, cin, cout, temb):
        norm(name + ".norm1", cin)
        conv(name + ".conv1", cout, cin, 3)
        lin(name + ".time_emb_proj", cout, temb)
        norm(name + ".norm2", cout)
        conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".conv_shortcut", cout, cin, 1)

    def attention(name, c):
        norm(name + ".group_norm", c)
        lin(name + ".to_q", c, c)
        lin(name + ".to_k", c, c)
        lin(name + ".to_v", c, c)
        lin(name + ".to_out.0", c, c)

    boc = cfg["block_out_channels"]
    lpb = cfg["layers_per_block"]
    temb = boc[0] * 4
    if cfg["time_embedding_type"] != "positional" or cfg.get("class_embed_type") or cfg.get("num_class_embeds"):
        raise ValueError("only positional time embedding without class embedding is enumerated")
    conv("conv_in", boc[0], cfg["in_channels"], 3)
    lin("time_embedding.linear_1", temb, boc[0])
    lin("time_embedding.linear_2", temb, temb)

    out_ch = boc[0]
    for i, bt in enumerate(cfg["down_block_types"]):
        in_ch, out_ch = out_ch, boc[i]
        final = i == len(boc) - 1
        for j in range(lpb):
            resnet(f"down_blocks.{i}.resnets.{j}", in_ch if j == 0 else out_ch, out_ch, temb)
            if bt == "AttnDownBlock2D":
                attention(f"down_blocks.{i}.attentions.{j}", out_ch)
            elif bt != "DownBlock2D":
                raise ValueError(bt)
        if not final:
            conv(f"down_blocks.{i}.downsamplers.0.conv", out_ch, out_ch, 3)

    mid = boc[-1]
    resnet("mid_block.resnets.0", mid, mid, temb)
    if cfg.get("add_attention", True):
        attention("mid_block.attentions.0", mid)
    resnet("mid_block.resnets.1", mid, mid, temb)

    rev = list(reversed(boc))
    out_ch = rev[0]
    for i, bt in enumerate(cfg["up_block_types"]):
        prev_out, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(boc) - 1)]
        final = i == len(boc) - 1
        for j in range(lpb + 1):
            skip = in_ch if j == lpb else out_ch
            rin = prev_out if j == 0 else out_ch
            resnet(f"up_blocks.{i}.resnets.{j}", rin + skip, out_ch, temb)
            if bt == "AttnUpBlock2D":
                attention(f"up_blocks.{i}.attentions.{j}", out_ch)
            elif bt != "UpBlock2D":
                raise ValueError(bt)
        if not final:
            conv(f"up_blocks.{i}.upsamplers.0.conv", out_ch, out_ch, 3)

    norm("conv_norm_out", boc[0])
    conv("conv_out", cfg["out_channels"], boc[0], 3)
    return out


# ---- random tensors and the safetensors writer ---------------------------------------------------------

def random_state(shapes, seed):
    """name -> little-endian float32 bytes. Weights ~ U(-1,1)/sqrt(fan_in) (keeps activations O(1) so fp16
    runs do not overflow); norm weights 1 + small noise; biases small."""
    try:
        import numpy as np
    except ImportError:
        np = None
    tensors = {}
    if np is not None:
        rng = np.random.default_rng(seed)
        for name, shape in shapes:
            n = int(math.prod(shape))
            if name.endswith(".bias"):
                a = rng.uniform(-0.02, 0.02, n)
            elif len(shape) == 1:  # GroupNorm weight
                a = 1.0 + rng.uniform(-0.1, 0.1, n)
            else:
                fan_in = int(math.prod(shape[1:]))
                a = rng.uniform(-1.0, 1.0, n) / math.sqrt(fan_in)
            tensors[name] = a.astype("<f4").tobytes()
        return tensors
    import torch  # fallback when numpy is absent
    g = torch.Generator().manual_seed(seed)
    for name, shape in shapes:
        if name.endswith(".bias"):
            t = (torch.rand(shape, generator=g) * 2 - 1) * 0.02
        elif len(shape) == 1:
            t = 1.0 + (torch.rand(shape, generator=g) * 2 - 1) * 0.1
        else:
            t = (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(math.prod(shape[1:]))
        tensors[name] = t.float().contiguous().numpy().astype("<f4").tobytes()
    return tensors


def write_safetensors(path, shapes, data, metadata=None):
    header = {}
    offset = 0
    for name, shape in shapes:
        nbytes = len(data[name])
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)  # align the data section to 8 bytes
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, _ in shapes:
            f.write(data[name])
    os.replace(tmp, path)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def build(out_dir, name, seed):
    spec = MODELS[name]
    cfg = spec["unet"]
    shapes = unet2d_param_shapes(cfg)
    nparams = sum(int(math.prod(s)) for _, s in shapes)
    if spec["expected_params"] is not None and nparams != spec["expected_params"]:
        raise SystemExit(f"{name}: enumerated {nparams} parameters, spec says {spec['expected_params']}")
    root = os.path.join(out_dir, name)
    os.makedirs(os.path.join(root, "unet"), exist_ok=True)
    write_json(os.path.join(root, "unet", "config.json"), cfg)
    data = random_state(shapes, seed)
    write_safetensors(os.path.join(root, "unet", "diffusion_pytorch_model.safetensors"), shapes, data,
                      {"format": "pt", "note": f"random weights, seed {seed}, architecture of google/{name}"})
    write_json(os.path.join(root, "scheduler", "scheduler_config.json"), ddpm_scheduler_config(spec["variance_type"]))
    write_json(os.path.join(root, "scheduler_ddim", "scheduler_config.json"), ddim_scheduler_config())
    write_json(os.path.join(root, "model_index.json"), {
        "_class_name": "DDPMPipeline", "_diffusers_version": "0.27.2",
        "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]})
    print(f"{name}: {len(shapes)} tensors, {nparams:,} parameters -> {root}")
    return root, shapes


def check(root, shapes, name):
    import torch
    try:
        import safetensors.torch  # noqa: F401  (diffusers 0.27 uses safetensors.torch without importing it)
    except ImportError:
        pass
    from diffusers import UNet2DModel
    cfg = {k: v for k, v in MODELS[name]["unet"].items() if not k.startswith("_")}
    ref = UNet2DModel(**cfg)
    ref_shapes = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    if sorted(ref_shapes) != sorted(shapes):
        a, b = set(ref_shapes), set(shapes)
        raise SystemExit(f"{name}: state dict mismatch; only in diffusers: {sorted(a - b)[:5]}, "
                         f"only here: {sorted(b - a)[:5]}")
    unet = UNet2DModel.from_pretrained(os.path.join(root, "unet"))
    unet.eval()
    s = MODELS[name]["unet"]["sample_size"]
    size = min(s, 64)  # a smaller spatial size keeps the CPU check fast; every block still runs
    with torch.no_grad():
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        y = unet(x, torch.tensor([500])).sample
    if y.shape != x.shape or not torch.isfinite(y).all():
        raise SystemExit(f"{name}: forward check failed: shape {tuple(y.shape)}, finite {bool(torch.isfinite(y).all())}")
    print(f"{name}: check ok (names/shapes match diffusers {__import__('diffusers').__version__}; "
          f"forward at {size}x{size}: std {float(y.std()):.3f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--models", default="cifar10-32,celebahq-256")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare with diffusers and run one forward (CPU)")
    args = ap.parse_args(argv)
    names = [ALIASES.get(m.strip(), m.strip()) for m in args.models.split(",") if m.strip()]
    for n in names:
        if n not in MODELS:
            ap.error(f"unknown model {n}; known: {', '.join(MODELS)}")
    for n in names:
        root, shapes = build(args.out_dir, n, args.seed)
        if args.check:
            check(root, shapes, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
