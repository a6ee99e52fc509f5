#!/usr/bin/env python3
"""Random-weight diffusers checkpoints with published architectures, for benchmarking (the weights are random:
the images are noise, the timings are real). No download, numpy only (torch as a fallback for the pixel models).

Pixel models (UNet2DModel, fp32): google/ddpm-cifar10-32 and google/ddpm-celebahq-256. Per model, a pipeline folder:
    <out>/<name>/model_index.json
    <out>/<name>/unet/config.json
    <out>/<name>/unet/diffusion_pytorch_model.safetensors     (fp32)
    <out>/<name>/scheduler/scheduler_config.json              (DDPMScheduler, as published)
    <out>/<name>/scheduler_ddim/scheduler_config.json         (DDIMScheduler with the same betas)

Stable Diffusion (fp16 by default; --sd-dtype fp32): sd15 (runwayml/stable-diffusion-v1-5's UNet, 859,520,964
parameters) and sd21 (stabilityai/stable-diffusion-2-1's UNet: per-level heads, linear projections, 1024-d
context, v-prediction; 865,910,724 parameters), each with the SD VAE (AutoencoderKL, 83,653,863 parameters):
    <out>/<name>/model_index.json                             (StableDiffusionPipeline, no text encoder)
    <out>/<name>/unet/config.json + diffusion_pytorch_model.safetensors
    <out>/<name>/vae/config.json  + diffusion_pytorch_model.safetensors
    <out>/<name>/scheduler/scheduler_config.json              (sd15: PNDMScheduler; sd21: DDIMScheduler v_prediction)
DiT (fp16 by default, --dit-dtype): dit-xl2-256 and dit-xl2-512 (facebook/DiT-XL-2-256 / -512's Transformer2DModel,
749,826,464 parameters in the file: 28 identical copies of the timestep/label embedder, as the hub checkpoints have
them, so the converter stores one; 674,834,720 unique), each with the SD VAE, as DiTPipeline folders:
    <out>/<name>/model_index.json                             (DiTPipeline, id2label with a few ImageNet names)
    <out>/<name>/transformer/config.json + diffusion_pytorch_model.safetensors
    <out>/<name>/vae/config.json  + diffusion_pytorch_model.safetensors
    <out>/<name>/scheduler/scheduler_config.json              (the hub's DDIMScheduler)
The configs, names and shapes come from tests/fixtures/dit/ (published_configs.json, dit_xl2_256_keys_shapes.txt:
made by diffusers 0.27.2 from the conversion script's config). 256 and 512 differ only in sample_size: the 512
folder hard-links the 256 folder's weight files when both are built (same bytes, no second 1.5 GB write).
Convert with `diffrt convert <out>/dit-xl2-256 -o dit256.drt --dtype fp16`.
The SD configs and the exact state-dict names and shapes come from tests/fixtures/sd_real/ (made by diffusers; the
sd21 list is the sd15 list with linear proj_in/proj_out [C, C] and attn2.to_k/to_v [C, 1024]). Convert with
`diffrt convert <out>/sd15 -o sd15.drt --dtype fp16`. There is no text encoder: benchmarks use random text
embeddings [B, 77, 768] (CLIP's cost, ~1 ms, is not part of the per-step figures).

Needs only numpy (or torch for the pixel models; no diffusers, no safetensors package): the parameter names and
shapes are enumerated here (UNet2DModel structure of diffusers 0.27.2) or read from the key lists, and the
safetensors file is written directly, tensor by tensor. With diffusers importable, --check instantiates the model
from the same config, asserts that the names and shapes match exactly and (pixel models) runs one forward pass.

Configs: /work/shared/research/diffusers_spec.md section 8 (cifar10-32, "high confidence", 35,746,307
parameters) and the brief for celebahq-256 (block_out_channels [128,128,256,256,512,512], attention at 16x16,
113.7 M parameters per perf_anchors.md section 0). Scheduler configs are those published with the models
(cifar: fixed_large per the spec; celebahq: fixed_small, recalled, not re-read; sd15: spec section 11.6; sd21:
recalled from the hub, not re-read).

Usage: make_bench_models.py OUT_DIR [--models cifar10-32,celebahq-256,sd15,sd21,dit-xl2-256,dit-xl2-512] [--seed 0]
                                    [--sd-dtype fp16] [--dit-dtype fp16] [--check] [--list]
"""
import argparse
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SD_REAL = os.path.join(HERE, "..", "tests", "fixtures", "sd_real")
DIT_FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "dit")

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

    def block_attention(name, block_type, attn_type, plain_type, c):
        # The attention of one resnet layer of a down/up block: present in attn_type blocks, absent in plain_type.
        if block_type == attn_type:
            attention(name, c)
        elif block_type != plain_type:
            raise ValueError(block_type)

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
            block_attention(f"down_blocks.{i}.attentions.{j}", bt, "AttnDownBlock2D", "DownBlock2D", out_ch)
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
            block_attention(f"up_blocks.{i}.attentions.{j}", bt, "AttnUpBlock2D", "UpBlock2D", out_ch)
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


# ---- Stable Diffusion (UNet2DConditionModel + AutoencoderKL), shapes from tests/fixtures/sd_real ----------

SD15_SCHEDULER = {  # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (spec section 11.6)
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False,
}
SD21_SCHEDULER = {  # stabilityai/stable-diffusion-2-1 (768-v), recalled
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None,
}
SD_MODELS = {
    "sd15": {"unet_config": "sd15_unet_config.json", "scheduler": SD15_SCHEDULER, "expected_params": 859520964,
             "derive": None},
    "sd21": {"unet_config": "sd21_unet_config.json", "scheduler": SD21_SCHEDULER, "expected_params": 865910724,
             "derive": "sd21"},
}
SD_VAE_PARAMS = 83653863
ALIASES.update({"sd1.5": "sd15", "sd-1.5": "sd15", "sd2.1": "sd21", "sd-2.1": "sd21"})


def read_key_shapes(path):
    """'name<TAB>(a, b, c)' lines -> [(name, shape)] in file order."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            name, dims = line.split("\t")
            out.append((name, tuple(int(d) for d in dims.strip("()").replace(" ", "").split(",") if d)))
    return out


def sd_unet_shapes(name):
    shapes = read_key_shapes(os.path.join(SD_REAL, "sd15_unet_keys_shapes.txt"))
    if SD_MODELS[name]["derive"] == "sd21":
        # SD 2.x: use_linear_projection (proj_in/proj_out are Linear [C, C]) and cross_attention_dim 1024.
        cfg = load_json(os.path.join(SD_REAL, SD_MODELS[name]["unet_config"]))
        ctx = cfg["cross_attention_dim"]
        fixed = []
        for k, shp in shapes:
            if k.endswith((".proj_in.weight", ".proj_out.weight")) and len(shp) == 4:
                shp = shp[:2]
            elif k.endswith((".attn2.to_k.weight", ".attn2.to_v.weight")):
                shp = (shp[0], ctx)
            fixed.append((k, shp))
        shapes = fixed
    return shapes


def load_json(path):
    with open(path) as f:
        return json.load(f)


def random_tensor_f32(rng, name, shape):
    """One tensor as float32 numpy: weights U(-1,1)/sqrt(fan_in), norm weights 1 +- 0.1, biases +-0.02."""
    import numpy as np
    n = int(math.prod(shape))
    if name.endswith(".bias"):
        return (rng.random(n, dtype=np.float32) * 0.04 - 0.02)
    if len(shape) == 1:
        return 1.0 + (rng.random(n, dtype=np.float32) * 0.2 - 0.1)
    fan_in = int(math.prod(shape[1:]))
    return (rng.random(n, dtype=np.float32) * 2.0 - 1.0) * np.float32(1.0 / math.sqrt(fan_in))


def write_safetensors_streamed(path, shapes, dtype, seed, metadata=None, tensor_bytes=None):
    """Writes random tensors one by one (the header first: every size is known), so a 1.7 GB file never sits in
    memory. dtype: "fp16" (F16) or "fp32" (F32). tensor_bytes(rng, name, shape, np_dtype), when given, makes each
    tensor's bytes in place of random_tensor_f32 (called in the order of shapes)."""
    import numpy as np
    st_dtype, np_dtype, es = {"fp16": ("F16", "<f2", 2), "fp32": ("F32", "<f4", 4)}[dtype]
    header, offset = {}, 0
    for name, shape in shapes:
        nbytes = int(math.prod(shape)) * es
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rng = np.random.default_rng(seed)
    if tensor_bytes is None:
        def tensor_bytes(rng, name, shape, np_dtype):
            return random_tensor_f32(rng, name, shape).astype(np_dtype).tobytes()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape in shapes:
            f.write(tensor_bytes(rng, name, shape, np_dtype))
    os.replace(tmp, path)
    return offset


def build_sd_folder(out_dir, name, unet_cfg, unet_shapes, vae_cfg, vae_shapes, scheduler, dtype, seed):
    """A StableDiffusionPipeline folder (no text encoder) with random weights in `dtype`."""
    root = os.path.join(out_dir, name)
    for sub in ("unet", "vae", "scheduler"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    write_json(os.path.join(root, "unet", "config.json"), unet_cfg)
    write_json(os.path.join(root, "vae", "config.json"), vae_cfg)
    write_json(os.path.join(root, "scheduler", "scheduler_config.json"), scheduler)
    note = {"format": "pt", "note": f"random weights, seed {seed}, architecture of {name}"}
    nb = write_safetensors_streamed(os.path.join(root, "unet", "diffusion_pytorch_model.safetensors"), unet_shapes,
                                    dtype, seed, note)
    nb += write_safetensors_streamed(os.path.join(root, "vae", "diffusion_pytorch_model.safetensors"), vae_shapes,
                                     dtype, seed + 1, note)
    write_json(os.path.join(root, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.27.2",
        "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
        "safety_checker": [None, None], "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": [None, None], "tokenizer": [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    return root, nb


def sd_parts(name):
    spec = SD_MODELS[name]
    unet_cfg = load_json(os.path.join(SD_REAL, spec["unet_config"]))
    vae_cfg = load_json(os.path.join(SD_REAL, "sd_vae_config.json"))
    unet_shapes = sd_unet_shapes(name)
    vae_shapes = read_key_shapes(os.path.join(SD_REAL, "sd_vae_keys_shapes.txt"))
    nu = sum(int(math.prod(s)) for _, s in unet_shapes)
    nv = sum(int(math.prod(s)) for _, s in vae_shapes)
    if nu != spec["expected_params"] or nv != SD_VAE_PARAMS:
        raise SystemExit(f"{name}: {nu:,} UNet / {nv:,} VAE parameters; expected {spec['expected_params']:,} / "
                         f"{SD_VAE_PARAMS:,}")
    return unet_cfg, unet_shapes, vae_cfg, vae_shapes, nu, nv


def build_sd(out_dir, name, seed, dtype="fp16"):
    import time
    t0 = time.time()
    unet_cfg, unet_shapes, vae_cfg, vae_shapes, nu, nv = sd_parts(name)
    root, nb = build_sd_folder(out_dir, name, unet_cfg, unet_shapes, vae_cfg, vae_shapes, SD_MODELS[name]["scheduler"],
                               dtype, seed)
    print(f"{name}: UNet {len(unet_shapes)} tensors, {nu:,} parameters; VAE {len(vae_shapes)} tensors, {nv:,} "
          f"parameters; {dtype}, {nb / 2**30:.2f} GiB in {time.time() - t0:.1f} s -> {root}")
    return root


def check_sd(root, name):
    import torch  # noqa: F401
    from diffusers import AutoencoderKL, UNet2DConditionModel
    unet_cfg, unet_shapes, vae_cfg, vae_shapes, _, _ = sd_parts(name)
    for cls, cfg, shapes, what in ((UNet2DConditionModel, unet_cfg, unet_shapes, "unet"),
                                   (AutoencoderKL, vae_cfg, vae_shapes, "vae")):
        with torch.device("meta"):
            ref = cls(**{k: v for k, v in cfg.items() if not k.startswith("_")})
        ref_shapes = sorted((k, tuple(v.shape)) for k, v in ref.state_dict().items())
        if ref_shapes != sorted(shapes):
            a, b = set(ref_shapes), set(shapes)
            raise SystemExit(f"{name} {what}: state dict mismatch; only in diffusers: {sorted(a - b)[:5]}, "
                             f"only here: {sorted(b - a)[:5]}")
    print(f"{name}: check ok (UNet and VAE names/shapes match diffusers {__import__('diffusers').__version__})")


# ---- DiT-XL/2 (Transformer2DModel ada_norm_zero + AutoencoderKL), shapes from tests/fixtures/dit ------------------

DIT_MODELS = {"dit-xl2-256": "transformer_256", "dit-xl2-512": "transformer_512"}
DIT_PARAMS = 749826464  # in the file (28 embedder copies); 674,834,720 unique
ALIASES.update({"dit256": "dit-xl2-256", "dit512": "dit-xl2-512", "dit-xl-2-256": "dit-xl2-256",
                "dit-xl-2-512": "dit-xl2-512"})
# A few ImageNet-1k names in the hub's model_index.json format (string keys, comma-separated synonyms).
DIT_ID2LABEL = {"0": "tench, Tinca tinca", "1": "goldfish, Carassius auratus", "207": "golden retriever",
                "360": "otter", "387": "lesser panda, red panda, panda, bear cat, cat bear, Ailurus fulgens",
                "417": "balloon", "979": "valley, vale"}


def dit_parts(name):
    pub = load_json(os.path.join(DIT_FIXTURES, "published_configs.json"))
    cfg = pub[DIT_MODELS[name]]
    shapes = []
    with open(os.path.join(DIT_FIXTURES, "dit_xl2_256_keys_shapes.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            k, dims = line.split("\t")
            shapes.append((k, tuple(int(d) for d in dims.strip("()").replace(" ", "").split(",") if d)))
    n = sum(int(math.prod(s)) for _, s in shapes)
    if n != DIT_PARAMS:
        raise SystemExit(f"{name}: {n:,} parameters in the key list, expected {DIT_PARAMS:,}")
    return cfg, shapes, pub["scheduler"]


def write_dit_transformer(path, shapes, dtype, seed, metadata):
    """Streams random tensors (U(-1,1)/sqrt(fan_in) weights, +-0.02 biases); every block's norm1.emb.* tensor is a
    copy of block 0's (the hub checkpoints' layout), so the converter deduplicates them."""
    import re
    emb0 = {}
    pat = re.compile(r"^transformer_blocks\.(\d+)\.norm1\.emb\.(.*)$")

    def tensor_bytes(rng, name, shape, np_dtype):
        m = pat.match(name)
        if m and m.group(1) != "0":
            return emb0[m.group(2)]
        data = random_tensor_f32(rng, name, shape).astype(np_dtype).tobytes()
        if m:
            emb0[m.group(2)] = data
        return data

    return write_safetensors_streamed(path, shapes, dtype, seed, metadata, tensor_bytes)


def build_dit(out_dir, name, seed, dtype="fp16", link_from=None):
    """A DiTPipeline folder with random weights in `dtype`. link_from: a built DiT folder whose weight files are
    hard-linked (256 and 512 have the same tensors)."""
    import time
    t0 = time.time()
    cfg, shapes, sched = dit_parts(name)
    root = os.path.join(out_dir, name)
    for sub in ("transformer", "vae", "scheduler"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    write_json(os.path.join(root, "transformer", "config.json"), cfg)
    write_json(os.path.join(root, "scheduler", "scheduler_config.json"), sched)
    write_json(os.path.join(root, "vae", "config.json"), load_json(os.path.join(SD_REAL, "sd_vae_config.json")))
    write_json(os.path.join(root, "model_index.json"), {
        "_class_name": "DiTPipeline", "_diffusers_version": "0.12.0.dev0", "id2label": DIT_ID2LABEL,
        "scheduler": ["diffusers", "DDIMScheduler"], "transformer": ["diffusers", "Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    files = ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors")
    if link_from:
        for rel in files:
            dst = os.path.join(root, rel)
            if os.path.exists(dst):
                os.remove(dst)
            os.link(os.path.join(link_from, rel), dst)
        nb = sum(os.path.getsize(os.path.join(root, rel)) for rel in files)
    else:
        note = {"format": "pt", "note": f"random weights, seed {seed}, architecture of facebook/DiT-XL-2"}
        nb = write_dit_transformer(os.path.join(root, files[0]), shapes, dtype, seed, note)
        vae_shapes = read_key_shapes(os.path.join(SD_REAL, "sd_vae_keys_shapes.txt"))
        nb += write_safetensors_streamed(os.path.join(root, files[1]), vae_shapes, dtype, seed + 1, note)
    print(f"{name}: transformer {len(shapes)} tensors, {DIT_PARAMS:,} parameters (28 identical embedder copies); "
          f"{dtype}, {nb / 2**30:.2f} GiB in {time.time() - t0:.1f} s{' (hard links)' if link_from else ''} -> {root}")
    return root


def check_dit(name):
    import torch  # noqa: F401
    from diffusers import Transformer2DModel
    cfg, shapes, _ = dit_parts(name)
    kw = {k: v for k, v in cfg.items() if not k.startswith("_")}
    if hasattr(torch.device("cpu"), "__enter__"):  # torch >= 2.0: no memory for the weights
        with torch.device("meta"):
            ref = Transformer2DModel(**kw)
    else:  # torch 1.x: a real CPU model (3 GB of fp32)
        ref = Transformer2DModel(**kw)
    ref_shapes = sorted((k, tuple(v.shape)) for k, v in ref.state_dict().items())
    if ref_shapes != sorted(shapes):
        raise SystemExit(f"{name}: state dict mismatch with diffusers")
    print(f"{name}: check ok (names/shapes match diffusers {__import__('diffusers').__version__})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", help="output folder (not needed with --list)")
    ap.add_argument("--models", default="cifar10-32,celebahq-256",
                    help="comma-separated: cifar10-32, celebahq-256, sd15, sd21, dit-xl2-256, dit-xl2-512")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sd-dtype", choices=["fp16", "fp32"], default="fp16",
                    help="storage dtype of the Stable Diffusion safetensors (fp16: half the bytes, faster to write)")
    ap.add_argument("--dit-dtype", choices=["fp16", "fp32"], default="fp16", help="storage dtype of the DiT safetensors")
    ap.add_argument("--check", action="store_true", help="compare with diffusers (and run one forward for pixel models)")
    ap.add_argument("--list", action="store_true", help="only enumerate and count the parameters; write nothing")
    args = ap.parse_args(argv)
    names = [ALIASES.get(m.strip(), m.strip()) for m in args.models.split(",") if m.strip()]
    for n in names:
        if n not in MODELS and n not in SD_MODELS and n not in DIT_MODELS:
            ap.error(f"unknown model {n}; known: {', '.join(list(MODELS) + list(SD_MODELS) + list(DIT_MODELS))}")
    if not args.list and not args.out_dir:
        ap.error("give OUT_DIR (or --list)")
    dit_built = None
    for n in names:
        if n in DIT_MODELS:
            if args.list:
                _, shapes, _ = dit_parts(n)
                print(f"{n}: transformer {len(shapes)} tensors, {DIT_PARAMS} parameters (674834720 unique)")
                continue
            dit_built = build_dit(args.out_dir, n, args.seed, args.dit_dtype, link_from=dit_built)
            if args.check:
                check_dit(n)
            continue
        if args.list:
            if n in SD_MODELS:
                _, us, _, vs, nu, nv = sd_parts(n)
                print(f"{n}: UNet {len(us)} tensors, {nu} parameters; VAE {len(vs)} tensors, {nv} parameters")
            else:
                shapes = unet2d_param_shapes(MODELS[n]["unet"])
                print(f"{n}: UNet {len(shapes)} tensors, {sum(int(math.prod(s)) for _, s in shapes)} parameters")
            continue
        if n in SD_MODELS:
            root = build_sd(args.out_dir, n, args.seed, args.sd_dtype)
            if args.check:
                check_sd(root, n)
            continue
        root, shapes = build(args.out_dir, n, args.seed)
        if args.check:
            check(root, shapes, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
