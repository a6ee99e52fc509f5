#!/usr/bin/env python3
"""Peer comparison: times diffusers UNet2DModel + DDIMScheduler (or DDPMScheduler) sampling steps on the GPU,
for the models of scripts/make_bench_models.py (random weights, published architectures), in PyTorch eager and
torch.compile (mode max-autotune, and reduce-overhead = CUDA graphs), at several batch sizes and dtypes.

One "step" = unet(x, t).sample followed by scheduler.step(eps, t, x).prev_sample, timed with CUDA events around
each step after warm-up (the first calls of a compiled model compile and record graphs; they are not timed).
Reported per combination: step latency p50/p90/p99 (ms), UNet-equivalent samples/s = batch / p50, images/s for a
full --image-steps run (batch / (p50 * image_steps)), peak memory (torch.cuda.max_memory_allocated), status.

Budget: --budget-s (default 240) bounds the whole run. Work runs in priority order (eager first, then
reduce-overhead, then max-autotune; fp16 before bf16 before fp32; small batches first); combinations that
would start after the budget are listed as skipped. Compiled modes run in a subprocess with a timeout, so a
slow autotune or a crash costs only its own combination; results printed before a timeout are kept.

fp32 runs with TF32 off (torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False) to match diffrt's
fp32 path, unless --fp32-tf32.

Dependencies: torch (the GPU image has it) and diffusers 0.27.2 with huggingface-hub 0.22.2. If diffusers is
not importable and --wheels DIR is given, the wheels from scripts/vendor_wheels.sh are installed with
pip --no-index --no-deps into a private --target folder that is put first on sys.path.

Stable Diffusion (--models sd15 or sd21): diffusers UNet2DConditionModel + DDIMScheduler steps exactly as
StableDiffusionPipeline runs them with classifier-free guidance: latents [B, 4, 64, 64] (512x512 for sd15), the
UNet on torch.cat([x, x]) with random text embeddings [2B, 77, 768] (UNet batch 2B), eps_u + g (eps_c - eps_u)
with g = --guidance-scale (7.5), then scheduler.step; the model is random-initialised directly on the GPU from
the published config (tests/fixtures/sd_real, via make_bench_models.py; no weight files needed) in --sd-dtypes
(fp16). The eager worker also times the VAE decode (AutoencoderKL.decode of latents / 0.18215, in the same
dtype; StableDiffusionPipeline would upcast an fp16 VAE to fp32 because of force_upcast) as vae_decode_ms_p50.
Compiled modes compile the UNet only.

DiT (--models dit-xl2-256,dit-xl2-512): diffusers Transformer2DModel + DDIMScheduler steps exactly as DiTPipeline
runs them with guidance: latents [B, 4, S, S] duplicated to [x; x], labels [y; 1000] (its [cond; uncond] order), the
transformer on the 2B batch with the 0-d timestep expanded, guidance on the first 4 (epsilon) channels, the learned-sigma
channels split off, then scheduler.step on all 2B rows (as the pipeline does); random init on the GPU from the published
config (tests/fixtures/dit/published_configs.json) in --dit-dtypes (fp16), batches --dit-batches (1,32), guidance
--dit-guidance-scale (4.0, DiTPipeline's default). The eager worker also times the VAE decode (1/0.18215 * latents).

--diffrt-json PATH (repeatable): diffrt's results -- `diffrt bench --json` files (schema diffrt.bench.v1; the
model is its "name", e.g. `--name sd15`), or a JSON list / {"results": [...]} of records with fields model, batch,
dtype, step_ms_p50 -- and prints diffrt/peer ratios (< 1: diffrt faster) per peer mode, for the step and, where
both sides have it, the VAE decode.

Usage:
  peer_compare.py --models-dir /tmp/benchmodels --json bench/results/peer_<gpu>_<date>.json
                  [--models cifar10-32,celebahq-256,sd15] [--dtypes fp16,bf16,fp32] [--modes eager,reduce-overhead,
                  max-autotune] [--cifar-batches 1,8,64,256] [--celebahq-batches 1,16] [--sd-batches 1]
                  [--sd-dtypes fp16] [--guidance-scale 7.5] [--steps 20] [--budget-s 240] [--wheels .whl]
                  [--diffrt-json bench_sd15.json ...]
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALIASES = {"cifar10-32": "ddpm-cifar10-32", "celebahq-256": "ddpm-celebahq-256",
           "google/ddpm-cifar10-32": "ddpm-cifar10-32", "google/ddpm-celebahq-256": "ddpm-celebahq-256",
           "sd1.5": "sd15", "sd-1.5": "sd15", "sd2.1": "sd21", "sd-2.1": "sd21"}
SD_NAMES = ("sd15", "sd21")
DIT_NAMES = ("dit-xl2-256", "dit-xl2-512")
ALIASES.update({"dit256": "dit-xl2-256", "dit512": "dit-xl2-512"})
MODE_RANK = {"eager": 0, "reduce-overhead": 1, "default": 2, "max-autotune": 3}
DTYPE_RANK = {"fp16": 0, "bf16": 1, "fp32": 2}


def norm_model(name):
    return ALIASES.get(name, name)


def ensure_diffusers(wheels):
    try:
        import diffusers  # noqa: F401
        return None
    except Exception as e:  # ImportError, or an incompatible huggingface_hub
        first_error = repr(e)
    if not wheels:
        raise SystemExit(f"diffusers is not importable ({first_error}); pass --wheels DIR (scripts/vendor_wheels.sh)")
    target = os.environ.get("PEER_SITE", "/tmp/diffrt_peer_site")
    whl = sorted(os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", target] + whl, check=True)
    sys.path.insert(0, target)
    os.environ["PYTHONPATH"] = target + os.pathsep + os.environ.get("PYTHONPATH", "")  # for worker subprocesses
    for m in [m for m in sys.modules if m.split(".")[0] in ("diffusers", "huggingface_hub", "safetensors")]:
        del sys.modules[m]
    import diffusers  # noqa: F401
    return target


def environment():
    import torch
    env = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
           "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "host": platform.node()}
    try:
        import diffusers
        import huggingface_hub
        env["diffusers"] = diffusers.__version__
        env["huggingface_hub"] = huggingface_hub.__version__
    except Exception as e:
        env["diffusers"] = f"unavailable: {e!r}"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, sm_count=p.multi_processor_count, gpu_mem_bytes=p.total_memory,
                   cc=f"{p.major}.{p.minor}")
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.limit",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if q.returncode == 0:
            f = [s.strip() for s in q.stdout.strip().splitlines()[0].split(",")]
            env.update(driver=f[0], sm_clock=f[1], mem_clock=f[2], max_sm_clock=f[3], power_limit=f[4])
    except Exception:
        pass
    return env


# ---- worker: one (model, mode, dtypes, batches) group, one JSON line per result -------------------------

def load_unet(models_dir, model):
    import torch  # noqa: F401
    try:
        import safetensors.torch  # noqa: F401  (diffusers 0.27 uses it without importing it)
    except ImportError:
        pass
    from diffusers import UNet2DModel
    path = os.path.join(models_dir, model, "unet") if models_dir else None
    if path and os.path.isfile(os.path.join(path, "config.json")):
        return UNet2DModel.from_pretrained(path), "file"
    sys.path.insert(0, HERE)
    import make_bench_models as mbm
    cfg = {k: v for k, v in mbm.MODELS[model]["unet"].items() if not k.startswith("_")}
    return UNet2DModel(**cfg), "random-init"


def make_scheduler(models_dir, model, kind):
    from diffusers import DDIMScheduler, DDPMScheduler
    sys.path.insert(0, HERE)
    import make_bench_models as mbm
    if kind == "ddim":
        return DDIMScheduler.from_config(mbm.ddim_scheduler_config())
    return DDPMScheduler.from_config(mbm.ddpm_scheduler_config(mbm.MODELS[model]["variance_type"]))


def percentile(sorted_v, q):
    if not sorted_v:
        return None
    pos = q * (len(sorted_v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_v) - 1)
    return sorted_v[lo] * (1 - (pos - lo)) + sorted_v[hi] * (pos - lo)


def padded_timesteps(sched, n_total):
    """The first n_total of sched.timesteps, repeated from the start when the schedule is shorter."""
    ts = list(sched.timesteps[:n_total])
    while len(ts) < n_total:
        ts += ts[: n_total - len(ts)]
    return ts


def timed_steps(torch, spec, rec, t0, step):
    """Runs step(i) for the spec's warm-up and timed steps under inference_mode, with CUDA events around each
    timed step and rec["warmup_s"] set after the warm-up; returns the timed steps' ms, sorted."""
    n_total = spec["warmup"] + spec["steps"]
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(spec["steps"])]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(spec["steps"])]
    with torch.inference_mode():
        for i in range(n_total):
            timed = i >= spec["warmup"]
            if timed:
                starts[i - spec["warmup"]].record()
            step(i)
            if timed:
                ends[i - spec["warmup"]].record()
            if i == spec["warmup"] - 1:
                torch.cuda.synchronize()
                rec["warmup_s"] = round(time.time() - t0, 2)
        torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in zip(starts, ends))


def step_stats(torch, ms, batch, spec, x):
    """The "ok" fields of a result: step time percentiles, throughput, peak memory, and whether x is finite."""
    p50 = percentile(ms, 0.5)
    return dict(status="ok", steps_timed=len(ms), step_ms_p50=p50, step_ms_p90=percentile(ms, 0.9),
                step_ms_p99=percentile(ms, 0.99), step_ms_min=ms[0], samples_per_s=batch / (p50 / 1e3),
                images_per_s=batch / (p50 / 1e3 * spec["image_steps"]), image_steps=spec["image_steps"],
                peak_mem_bytes=torch.cuda.max_memory_allocated(), finite=bool(torch.isfinite(x).all()))


def compiled(torch, model, mode):
    """model itself in eager mode, else torch.compile(model, mode) (after a dynamo reset)."""
    if mode == "eager":
        return model
    torch._dynamo.reset()
    return torch.compile(model, mode=mode, fullgraph=False)


def timed_steps_and_decode(torch, spec, rec, t0, step, latents, batch, vae_cfg, dtype, AutoencoderKL):
    """timed_steps + step_stats on latents() (the latents after the steps); in eager mode also the VAE decode."""
    ms = timed_steps(torch, spec, rec, t0, step)
    x = latents()
    rec.update(step_stats(torch, ms, batch, spec, x))
    if spec["mode"] == "eager" and spec.get("vae", True):
        rec.update(vae_decode(vae_cfg, x, dtype, AutoencoderKL, torch))


def run_case(torch, rec, case):
    """Runs case(t0) on an emptied CUDA cache with fresh peak-memory stats; an OOM or any other failure
    (compile failures, unsupported combos) is recorded in rec instead of raised. Prints rec as a RESULT line."""
    t0 = time.time()
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        case(t0)
    except torch.cuda.OutOfMemoryError as e:
        rec.update(status="oom", error=str(e).splitlines()[0][:300])
    except Exception as e:  # compile failures, unsupported combos: report and go on
        rec.update(status="error", error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    rec["wall_s"] = round(time.time() - t0, 2)
    print("RESULT " + json.dumps(rec), flush=True)
    torch.cuda.empty_cache()


def run_worker(spec):
    import torch
    if spec.get("wheel_site"):
        sys.path.insert(0, spec["wheel_site"])
    torch.backends.cuda.matmul.allow_tf32 = bool(spec["fp32_tf32"])
    torch.backends.cudnn.allow_tf32 = bool(spec["fp32_tf32"])
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model, mode = spec["model"], spec["mode"]
    base, source = load_unet(spec["models_dir"], model)
    base.eval().requires_grad_(False)
    size = base.config.sample_size
    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for dtype in spec["dtypes"]:
        unet = base.to(dev, tdt[dtype])
        if spec["channels_last"]:
            unet = unet.to(memory_format=torch.channels_last)
        fn = compiled(torch, unet, mode)
        for batch in spec["batches"]:
            rec = {"model": model, "mode": mode, "dtype": dtype, "batch": batch, "scheduler": spec["scheduler"],
                   "weights": source, "channels_last": spec["channels_last"]}

            def case(t0):
                sched = make_scheduler(spec["models_dir"], model, spec["scheduler"])
                n_total = spec["warmup"] + spec["steps"]
                sched.set_timesteps(max(n_total, 50) if spec["scheduler"] == "ddim" else 1000)
                ts = [int(t) for t in padded_timesteps(sched, n_total)]
                tt = [torch.full((batch,), t, device=dev, dtype=torch.long) for t in ts]
                g = torch.Generator(device=dev).manual_seed(0)
                x = torch.randn(batch, 3, size, size, device=dev, dtype=tdt[dtype], generator=g)
                if spec["channels_last"]:
                    x = x.contiguous(memory_format=torch.channels_last)

                def step(i):
                    nonlocal x
                    eps = fn(x, tt[i]).sample
                    x = sched.step(eps, ts[i], x, generator=g).prev_sample

                ms = timed_steps(torch, spec, rec, t0, step)
                rec.update(step_stats(torch, ms, batch, spec, x))

            run_case(torch, rec, case)
        if mode != "eager":
            del fn
            torch._dynamo.reset()


# ---- worker: Stable Diffusion (UNet2DConditionModel + DDIM with CFG, VAE decode) --------------------------

def run_worker_sd(spec):
    import torch
    if spec.get("wheel_site"):
        sys.path.insert(0, spec["wheel_site"])
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = bool(spec["fp32_tf32"])
    torch.backends.cudnn.allow_tf32 = bool(spec["fp32_tf32"])
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    sys.path.insert(0, HERE)
    import make_bench_models as mbm
    dev = torch.device("cuda")
    model, mode = spec["model"], spec["mode"]
    unet_cfg, _, vae_cfg, _, _, _ = mbm.sd_parts(model)
    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    size = unet_cfg["sample_size"]
    ctx_dim = unet_cfg["cross_attention_dim"]
    g_scale = float(spec["guidance_scale"])
    for dtype in spec["dtypes"]:
        t_load = time.time()
        with torch.device(dev):  # random init straight on the GPU: no weight files, no CPU init
            unet = UNet2DConditionModel(**{k: v for k, v in unet_cfg.items() if not k.startswith("_")})
        unet = unet.to(dtype=tdt[dtype]).eval().requires_grad_(False)
        if spec["channels_last"]:
            unet = unet.to(memory_format=torch.channels_last)
        load_s = round(time.time() - t_load, 2)
        fn = compiled(torch, unet, mode)
        for batch in spec["batches"]:
            rec = {"model": model, "mode": mode, "dtype": dtype, "batch": batch, "scheduler": "ddim", "cfg": g_scale > 1,
                   "guidance_scale": g_scale, "unet_batch": 2 * batch if g_scale > 1 else batch, "height": size * 8,
                   "width": size * 8, "context_len": 77, "weights": "random-init", "channels_last": spec["channels_last"],
                   "load_s": load_s}

            def case(t0):
                sched = DDIMScheduler.from_config(mbm.SD_MODELS[model]["scheduler"])
                n_total = spec["warmup"] + spec["steps"]
                sched.set_timesteps(max(n_total, 50))
                ts = [int(t) for t in padded_timesteps(sched, n_total)]
                # The UNet gets a 0-d device tensor (as in the pipeline; a Python int would be a compile-time
                # constant); scheduler.step gets the int (no device->host read for its table lookups).
                tt = [torch.tensor(t, device=dev) for t in ts]
                gen = torch.Generator(device=dev).manual_seed(0)
                x = torch.randn(batch, 4, size, size, device=dev, dtype=tdt[dtype], generator=gen)
                ctx = torch.randn(2 * batch if g_scale > 1 else batch, 77, ctx_dim, device=dev, dtype=tdt[dtype],
                                  generator=gen)

                def step(i):
                    nonlocal x
                    lat = torch.cat([x, x]) if g_scale > 1 else x  # StableDiffusionPipeline's [uncond; cond]
                    eps = fn(lat, tt[i], encoder_hidden_states=ctx).sample
                    if g_scale > 1:
                        eps_u, eps_c = eps.chunk(2)
                        eps = eps_u + g_scale * (eps_c - eps_u)
                    x = sched.step(eps, ts[i], x).prev_sample

                timed_steps_and_decode(torch, spec, rec, t0, step, lambda: x, batch, vae_cfg, tdt[dtype], AutoencoderKL)

            run_case(torch, rec, case)
        fn = unet = None
        torch.cuda.empty_cache()
        if mode != "eager":
            torch._dynamo.reset()


# ---- worker: DiT (Transformer2DModel ada_norm_zero + DDIM with DiTPipeline's guidance, VAE decode) --------------

def dit_step(torch, fn, sched, lmi, t, t_dev, y_in, g_scale, cin):
    """One DiTPipeline.__call__ loop iteration (diffusers 0.27.2): lmi holds [x; x] with guidance (g > 1), else x;
    y_in is [y; 1000 x B] or y. Returns the new lmi (scheduler.step over all rows, as the pipeline does)."""
    cfg_on = g_scale > 1
    if cfg_on:
        half = lmi[: len(lmi) // 2]
        lmi = torch.cat([half, half], dim=0)
    lmi = sched.scale_model_input(lmi, t)
    tt = t_dev[None].expand(lmi.shape[0])
    out = fn(lmi, timestep=tt, class_labels=y_in).sample
    if cfg_on:
        eps, rest = out[:, :cin], out[:, cin:]
        cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond + g_scale * (cond - uncond)
        out = torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)
    model_output = torch.split(out, cin, dim=1)[0] if out.shape[1] // 2 == cin else out  # learned sigma dropped
    return sched.step(model_output, t, lmi).prev_sample


def run_worker_dit(spec):
    import torch
    if spec.get("wheel_site"):
        sys.path.insert(0, spec["wheel_site"])
    torch.backends.cuda.matmul.allow_tf32 = bool(spec["fp32_tf32"])
    torch.backends.cudnn.allow_tf32 = bool(spec["fp32_tf32"])
    from diffusers import AutoencoderKL, DDIMScheduler, Transformer2DModel
    sys.path.insert(0, HERE)
    import make_bench_models as mbm
    dev = torch.device("cuda")
    model, mode = spec["model"], spec["mode"]
    cfg, _, sched_cfg = mbm.dit_parts(model)
    vae_cfg = mbm.load_json(os.path.join(mbm.SD_REAL, "sd_vae_config.json"))
    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    size, cin = cfg["sample_size"], cfg["in_channels"]
    g_scale = float(spec["dit_guidance_scale"])
    for dtype in spec["dtypes"]:
        t_load = time.time()
        kw = {k: v for k, v in cfg.items() if not k.startswith("_")}
        if hasattr(dev, "__enter__"):
            with dev:  # random init straight on the GPU
                tr = Transformer2DModel(**kw)
        else:
            tr = Transformer2DModel(**kw).to(dev)
        tr = tr.to(dtype=tdt[dtype]).eval().requires_grad_(False)
        load_s = round(time.time() - t_load, 2)
        fn = compiled(torch, tr, mode)
        for batch in spec["batches"]:
            cfg_on = g_scale > 1
            rec = {"model": model, "mode": mode, "dtype": dtype, "batch": batch, "scheduler": "ddim", "cfg": cfg_on,
                   "guidance_scale": g_scale, "unet_batch": 2 * batch if cfg_on else batch, "height": size * 8,
                   "width": size * 8, "weights": "random-init", "load_s": load_s}

            def case(t0):
                sched = DDIMScheduler.from_config(sched_cfg)
                n_total = spec["warmup"] + spec["steps"]
                sched.set_timesteps(max(n_total, 50))
                ts = padded_timesteps(sched, n_total)
                ts_dev = [t.to(dev) for t in ts]
                gen = torch.Generator(device=dev).manual_seed(0)
                x = torch.randn(batch, cin, size, size, device=dev, dtype=tdt[dtype], generator=gen)
                y = torch.arange(batch, device=dev) % 1000
                y_in = torch.cat([y, torch.full_like(y, 1000)]) if cfg_on else y  # DiTPipeline: [cond; uncond]
                lmi = torch.cat([x, x]) if cfg_on else x

                def step(i):
                    nonlocal lmi
                    lmi = dit_step(torch, fn, sched, lmi, ts[i], ts_dev[i], y_in, g_scale, cin)

                timed_steps_and_decode(torch, spec, rec, t0, step, lambda: lmi.chunk(2)[0] if cfg_on else lmi, batch,
                                       vae_cfg, tdt[dtype], AutoencoderKL)

            run_case(torch, rec, case)
        fn = tr = None
        torch.cuda.empty_cache()
        if mode != "eager":
            torch._dynamo.reset()


def vae_decode(vae_cfg, latents, dtype, AutoencoderKL, torch, reps=5):
    """Times AutoencoderKL.decode(latents / scaling_factor) (eager, one warm-up): p50 ms and whether it is finite."""
    with torch.device(latents.device):
        vae = AutoencoderKL(**{k: v for k, v in vae_cfg.items() if not k.startswith("_")})
    vae = vae.to(dtype=dtype).eval().requires_grad_(False)
    z = (latents / vae.config.scaling_factor).to(dtype)
    ms = []
    with torch.inference_mode():
        img = vae.decode(z).sample
        torch.cuda.synchronize()
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            img = vae.decode(z).sample
            b.record()
            torch.cuda.synchronize()
            ms.append(a.elapsed_time(b))
    ms.sort()
    out = {"vae_decode_ms_p50": percentile(ms, 0.5), "vae_decode_ms_min": ms[0], "vae_decode_reps": reps,
           "vae_dtype": str(dtype).replace("torch.", ""), "vae_finite": bool(torch.isfinite(img).all())}
    del vae, img
    return out


# ---- driver --------------------------------------------------------------------------------------------

def plan(args):
    """Worker groups in priority order: (mode, model, dtype) -> batches."""
    models = [norm_model(m.strip()) for m in args.models.split(",") if m.strip()]
    dtypes = sorted([d.strip() for d in args.dtypes.split(",") if d.strip()], key=lambda d: DTYPE_RANK.get(d, 9))
    modes = sorted([m.strip() for m in args.modes.split(",") if m.strip()], key=lambda m: MODE_RANK.get(m, 9))
    sd_dtypes = sorted([d.strip() for d in args.sd_dtypes.split(",") if d.strip()], key=lambda d: DTYPE_RANK.get(d, 9))
    batches = {"ddpm-cifar10-32": [int(b) for b in args.cifar_batches.split(",") if b],
               "ddpm-celebahq-256": [int(b) for b in args.celebahq_batches.split(",") if b]}
    for sd in SD_NAMES:
        batches[sd] = [int(b) for b in args.sd_batches.split(",") if b]
    for dit in DIT_NAMES:
        batches[dit] = [int(b) for b in args.dit_batches.split(",") if b]
    dit_dtypes = sorted([d.strip() for d in args.dit_dtypes.split(",") if d.strip()], key=lambda d: DTYPE_RANK.get(d, 9))

    def dtypes_of(model):
        return sd_dtypes if model in SD_NAMES else dit_dtypes if model in DIT_NAMES else dtypes
    groups = []
    for mode in modes:
        if mode == "eager":  # cheap: one worker per model runs every dtype (fp16 first)
            for model in models:
                groups.append({"mode": mode, "model": model, "dtypes": dtypes_of(model),
                               "batches": batches.get(model, [1])})
            continue
        for model in models:
            for dtype in dtypes_of(model):
                groups.append({"mode": mode, "model": model, "dtypes": [dtype], "batches": batches.get(model, [1])})
    # Within a mode: fp16 before the other dtypes, and pixel models before Stable Diffusion within a dtype.
    groups.sort(key=lambda g: (MODE_RANK.get(g["mode"], 9), DTYPE_RANK.get(g["dtypes"][0], 9) if g["mode"] != "eager"
                               else 0, g["model"] in SD_NAMES or g["model"] in DIT_NAMES))
    return groups


def run_group(group, args, wheel_site, deadline, results, skipped):
    remaining = deadline - time.time()
    combos = [(group["model"], group["mode"], d, b) for d in group["dtypes"] for b in group["batches"]]
    if remaining < 10:
        skipped.extend({"model": m, "mode": mo, "dtype": d, "batch": b, "reason": "over --budget-s"}
                       for m, mo, d, b in combos)
        return
    spec = dict(group, models_dir=args.models_dir, steps=args.steps, warmup=args.warmup if group["mode"] == "eager"
                else max(args.warmup, 3), scheduler=args.scheduler, image_steps=args.image_steps,
                fp32_tf32=args.fp32_tf32, channels_last=args.channels_last, wheel_site=wheel_site,
                guidance_scale=args.guidance_scale, dit_guidance_scale=args.dit_guidance_scale, vae=not args.no_vae)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    print(f"[peer] {group['mode']} {group['model']} {group['dtypes']} batches {group['batches']} "
          f"(budget left {remaining:.0f} s)", flush=True)
    got = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = (err or "") + "\n[peer] worker killed: over --budget-s"
        for line in (out or "").splitlines():
            if line.startswith("RESULT "):
                got.append(json.loads(line[7:]))
        if proc.returncode not in (0, None) and not got:
            tail = "\n".join((err or "").strip().splitlines()[-5:])
            print(f"[peer] worker failed (rc {proc.returncode}): {tail}", flush=True)
    except Exception as e:
        err = repr(e)
    done = {(r["dtype"], r["batch"]) for r in got}
    for m, mo, d, b in combos:
        if (d, b) not in done:
            reason = "over --budget-s" if "over --budget-s" in (err or "") else "worker failed"
            tail = " | ".join((err or "").strip().splitlines()[-3:])[:400]
            got.append({"model": m, "mode": mo, "dtype": d, "batch": b, "status": "not_run", "error": f"{reason}: {tail}"})
    for r in got:
        results.append(r)
        if r.get("status") == "ok":
            print(f"[peer]   {r['mode']:15s} {r['model']:18s} {r['dtype']} B={r['batch']:<4d} "
                  f"p50 {r['step_ms_p50']:.3f} ms  p90 {r['step_ms_p90']:.3f}  {r['samples_per_s']:.0f} samples/s  "
                  f"peak {r['peak_mem_bytes'] / 2**30:.2f} GiB", flush=True)
        else:
            print(f"[peer]   {r['mode']:15s} {r['model']:18s} {r['dtype']} B={r['batch']:<4d} "
                  f"{r.get('status')}: {r.get('error', '')[:200]}", flush=True)


def markdown(results):
    lines = ["| model | mode | dtype | batch | step p50 ms | p90 | p99 | samples/s | images/s | peak GiB | VAE ms | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.get("status") == "ok":
            vae = f"{r['vae_decode_ms_p50']:.2f}" if r.get("vae_decode_ms_p50") is not None else ""
            lines.append(f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['batch']} | {r['step_ms_p50']:.3f} | "
                         f"{r['step_ms_p90']:.3f} | {r['step_ms_p99']:.3f} | {r['samples_per_s']:.0f} | "
                         f"{r['images_per_s']:.2f} | {r['peak_mem_bytes'] / 2**30:.2f} | {vae} | ok |")
        else:
            lines.append(f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['batch']} | | | | | | | | "
                         f"{r.get('status')}: {r.get('error', '')[:80]} |")
    return "\n".join(lines)


def diffrt_records(paths):
    """diffrt results -> records {model, batch, dtype, step_ms_p50[, vae_decode_ms_p50, source]}."""
    recs = []
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        if isinstance(d, dict) and d.get("schema") == "diffrt.bench.v1":
            step = (d.get("results") or {}).get("step") or {}
            vae = (d.get("results") or {}).get("vae_decode") or {}
            if step.get("p50_ms") is None:
                continue
            rec = {"model": norm_model(str(d.get("name", ""))), "batch": int(d["workload"]["batch"]),
                   "dtype": d["model"]["dtype"], "step_ms_p50": step["p50_ms"], "device": d["env"].get("device"),
                   "source": str(path)}
            if vae.get("p50_ms") is not None:
                rec["vae_decode_ms_p50"] = vae["p50_ms"]
            recs.append(rec)
            continue
        items = d.get("results", d) if isinstance(d, dict) else d
        for r in items if isinstance(items, list) else []:
            if isinstance(r, dict) and "step_ms_p50" in r:
                recs.append(dict(r, model=norm_model(str(r.get("model", ""))), source=str(path)))
    return recs


def diffrt_ratios(paths, results):
    if isinstance(paths, str):
        paths = [paths]
    peer = {}
    for r in results:
        if r.get("status") == "ok":
            peer[(r["model"], r["batch"], r["dtype"], r["mode"])] = r
    rows = []
    for r in diffrt_records(paths):
        for mode in ("eager", "reduce-overhead", "max-autotune", "default"):
            p = peer.get((r["model"], int(r.get("batch", 0)), r.get("dtype"), mode))
            if not p:
                continue
            row = {"model": r["model"], "batch": int(r["batch"]), "dtype": r["dtype"], "peer_mode": mode,
                   "diffrt_step_ms_p50": r["step_ms_p50"], "peer_step_ms_p50": p["step_ms_p50"],
                   "ratio_diffrt_over_peer": r["step_ms_p50"] / p["step_ms_p50"]}
            if r.get("vae_decode_ms_p50") and p.get("vae_decode_ms_p50"):
                row.update(diffrt_vae_ms_p50=r["vae_decode_ms_p50"], peer_vae_ms_p50=p["vae_decode_ms_p50"],
                           vae_ratio_diffrt_over_peer=r["vae_decode_ms_p50"] / p["vae_decode_ms_p50"])
            rows.append(row)
    print("\n| model | batch | dtype | peer | diffrt p50 ms | peer p50 ms | diffrt/peer | VAE diffrt/peer |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for x in rows:
        vae = (f"{x['diffrt_vae_ms_p50']:.2f}/{x['peer_vae_ms_p50']:.2f} ms = {x['vae_ratio_diffrt_over_peer']:.2f}"
               if "vae_ratio_diffrt_over_peer" in x else "")
        print(f"| {x['model']} | {x['batch']} | {x['dtype']} | {x['peer_mode']} | {x['diffrt_step_ms_p50']:.3f} | "
              f"{x['peer_step_ms_p50']:.3f} | {x['ratio_diffrt_over_peer']:.2f} | {vae} |")
    if not rows:
        print("(no matching model/batch/dtype between the two result sets)")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--models-dir", default=os.environ.get("DIFFRT_BENCH_MODELS", "/tmp/diffrt_bench_models"))
    ap.add_argument("--models", default="cifar10-32,celebahq-256")
    ap.add_argument("--dtypes", default="fp16,bf16,fp32")
    ap.add_argument("--modes", default="eager,reduce-overhead,max-autotune")
    ap.add_argument("--cifar-batches", default="1,8,64,256")
    ap.add_argument("--celebahq-batches", default="1,16")
    ap.add_argument("--sd-batches", default="1", help="Stable Diffusion image batches (the UNet runs at 2x with CFG)")
    ap.add_argument("--sd-dtypes", default="fp16", help="Stable Diffusion dtypes")
    ap.add_argument("--guidance-scale", type=float, default=7.5, help="Stable Diffusion CFG scale (<= 1: no CFG)")
    ap.add_argument("--no-vae", action="store_true", help="Stable Diffusion / DiT: do not time the VAE decode")
    ap.add_argument("--dit-batches", default="1,32", help="DiT image batches (the transformer runs at 2x with CFG)")
    ap.add_argument("--dit-dtypes", default="fp16", help="DiT dtypes")
    ap.add_argument("--dit-guidance-scale", type=float, default=4.0, help="DiT CFG scale (DiTPipeline's default 4)")
    ap.add_argument("--scheduler", choices=["ddim", "ddpm"], default="ddim")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per combination")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiled: at least 3)")
    ap.add_argument("--image-steps", type=int, default=50, help="steps per image for images/s (DDIM 50)")
    ap.add_argument("--budget-s", type=float, default=240)
    ap.add_argument("--fp32-tf32", action="store_true", help="let fp32 use TF32 (default off, like diffrt)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--wheels", help="folder of wheels from scripts/vendor_wheels.sh, used if diffusers is missing")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--diffrt-json", action="append", default=[],
                    help="diffrt results to compare (diffrt bench --json files, or records with model, batch, dtype, "
                         "step_ms_p50); repeatable")
    ap.add_argument("--no-make-models", action="store_true", help="do not create missing model folders")
    args = ap.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        (run_worker_sd if spec["model"] in SD_NAMES else run_worker_dit if spec["model"] in DIT_NAMES
         else run_worker)(spec)
        return 0

    t_start = time.time()
    deadline = t_start + args.budget_s
    wheel_site = ensure_diffusers(args.wheels)
    import torch
    if not torch.cuda.is_available():
        print("peer_compare: no CUDA device", file=sys.stderr)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"schema": "diffrt.peer_compare.v1", "env": environment(), "results": [],
                           "aborted": "no CUDA device"}, f, indent=1)
        return 3
    models = [norm_model(m.strip()) for m in args.models.split(",") if m.strip()]
    if not args.no_make_models:
        sys.path.insert(0, HERE)
        import make_bench_models as mbm
        for m in models:
            if m in SD_NAMES or m in DIT_NAMES:  # random-initialised on the GPU by the worker: no files needed
                continue
            if not os.path.isfile(os.path.join(args.models_dir, m, "unet", "config.json")):
                mbm.build(args.models_dir, m, 0)
    env = environment()
    env["fp32_tf32"] = args.fp32_tf32
    results, skipped = [], []
    for group in plan(args):
        run_group(group, args, wheel_site, deadline, results, skipped)
    if skipped:
        print(f"[peer] {len(skipped)} combinations skipped (over --budget-s {args.budget_s:.0f}): " +
              ", ".join(f"{s['mode']}/{s['model']}/{s['dtype']}/B{s['batch']}" for s in skipped[:20]) +
              (" ..." if len(skipped) > 20 else ""), flush=True)
    print()
    print(markdown(results))
    out = {"schema": "diffrt.peer_compare.v1", "env": env,
           "options": {k: v for k, v in vars(args).items() if k != "worker"},
           "results": results, "skipped": skipped, "wall_s": round(time.time() - t_start, 1)}
    if args.diffrt_json:
        out["ratios"] = diffrt_ratios(args.diffrt_json, results)
        out["diffrt"] = [str(p) for p in args.diffrt_json]
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"[peer] wrote {args.json}")
    ok = sum(1 for r in results if r.get("status") == "ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
