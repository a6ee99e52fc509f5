#!/usr/bin/env python3
"""Renders the README performance table from the latest benchmark results in bench/results/.

Inputs (see bench/README.md): kernel results from diffrt_kernel_bench --json (schema diffrt.kernel_bench.v1),
whole-model results from `diffrt bench --json` (schema diffrt.bench.v1, one file per model and workload) and
peer results from scripts/peer_compare.py --json (schema diffrt.peer_compare.v1). "Latest" = the newest
env.date_utc among files of that schema (file modification time breaks ties); for diffrt bench files, the newest
per (model name, size, batch, dtype, guidance) measured on a GPU (CPU runs are testing runs and are skipped).
Files with no results (no GPU, aborted before the first case) are ignored.

The whole-model table puts diffrt's per-step latency (the sampler's CUDA-graph replay, p50) next to diffusers
eager and torch.compile from the latest peer file (same model, batch, dtype), with the targets of the issues
(TARGETS below: e.g. SD 1.5 512x512 CFG batch 1 <= 5 ms/step and VAE decode <= 15 ms on an H100).

Output: markdown on stdout, or, with --readme PATH, written into PATH between the lines
    <!-- BENCH_TABLE_BEGIN -->
    <!-- BENCH_TABLE_END -->
(the markers must already be there; the text between them is replaced, nothing else is touched).
The table is generated, never typed: re-run this after committing new results.

Usage: bench_table.py [--results bench/results] [--readme README.md] [--kernels FILE] [--peer FILE] [--diffrt FILE ...]
"""
import argparse
import glob
import json
import os
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BEGIN, END = "<!-- BENCH_TABLE_BEGIN -->", "<!-- BENCH_TABLE_END -->"
# Which impl is diffrt's and which is the baseline, per op.
PAIRS = {"group_norm": ("diffrt", "naive"), "layer_norm": ("diffrt", "naive"), "geglu": ("diffrt", "eager"),
         "attention": ("diffrt", "naive_cublas"),
         "conv": ("diffrt_cudnn", "cudnn_heuristic"), "linear": ("diffrt", "cublas"), "sched": ("diffrt", "eager")}
# Targets from the issues (H100), per (model name, batch, dtype): (what, limit in ms, label).
TARGETS = {("sd15", 1, "fp16"): [("step", 5.0, "<= 5 ms/step"), ("vae", 15.0, "VAE <= 15 ms")],
           ("ddpm-cifar10-32", 1, "fp16"): [("step", 0.2, "<= 0.2 ms/step")]}
MODEL_ALIASES = {"cifar10-32": "ddpm-cifar10-32", "celebahq-256": "ddpm-celebahq-256", "sd1.5": "sd15",
                 "sd2.1": "sd21"}


def iter_schema_files(paths, schema):
    """(path, document) for each of paths that loads as a JSON object of the given schema; others are skipped."""
    for p in paths:
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("schema") == schema:
            yield p, d


def load_latest(folder, schema, explicit=None):
    paths = [explicit] if explicit else sorted(glob.glob(os.path.join(folder, "*.json")))
    best = None
    for p, d in iter_schema_files(paths, schema):
        if not d.get("results"):
            continue
        key = (d.get("env", {}).get("date_utc", ""), os.path.getmtime(p))
        if best is None or key > best[0]:
            best = (key, p, d)
    return (best[1], best[2]) if best else (None, None)


def fmt(v, nd=1):
    return "" if v is None else f"{v:.{nd}f}"


def kernel_section(path, d):
    env = d.get("env", {})
    c = d.get("ceilings", {})
    g = c.get("gemm_tflops", {})
    out = [f"**Kernels** — {env.get('gpu', '?')}, driver {env.get('driver', '?')}, CUDA runtime {env.get('cuda_runtime', '?')}, "
           f"cuDNN {env.get('cudnn', '?')}, {env.get('date_utc', '?')}, commit {env.get('git_sha', '?')}, "
           f"L2 {d.get('options', {}).get('l2', '?')}. Command: `{env.get('command', '?')}`. Source: `{os.path.relpath(path, REPO)}`.",
           "",
           f"Measured ceilings: copy {fmt(c.get('copy_gbps'), 0)} GB/s; cuBLAS GEMM fp16 {fmt(g.get('fp16'), 0)}, "
           f"bf16 {fmt(g.get('bf16'), 0)}, fp32 (no TF32) {fmt(g.get('fp32'))} TFLOP/s.",
           "",
           "| op | case | dtype | diffrt µs (p50) | p90 | GB/s | TFLOP/s | roofline % | baseline | baseline µs | speed-up |",
           "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    rows = {}
    for r in d["results"]:
        if r.get("ceiling"):
            continue
        rows.setdefault((r["op"], r["case"], r["dtype"]), {})[r["impl"]] = r
    for (op, case, dtype), impls in rows.items():
        mine_name, base_name = PAIRS.get(op, ("diffrt", None))
        mine, base = impls.get(mine_name), impls.get(base_name) if base_name else None
        if mine is None:
            continue
        if "error" in mine:
            out.append(f"| {op} | {case} | {dtype} | error | | | | | | | |")
            continue
        sp = ""
        if base and "error" not in base and mine.get("median_us"):
            sp = f"{base['median_us'] / mine['median_us']:.2f}×"
        out.append(f"| {op} | {case} | {dtype} | {fmt(mine.get('median_us'), 2)} | {fmt(mine.get('p90_us'), 2)} | "
                   f"{fmt(mine.get('gbps'), 0) if mine.get('bytes') else ''} | "
                   f"{fmt(mine.get('tflops')) if mine.get('flops') else ''} | {fmt(100 * mine.get('roof_frac', 0), 0)} | "
                   f"{base_name or ''} | {fmt(base.get('median_us'), 2) if base and 'error' not in base else ''} | {sp} |")
    return out


def peer_section(path, d):
    env = d.get("env", {})
    out = [f"**Whole model, PyTorch peers** — {env.get('gpu', '?')}, torch {env.get('torch', '?')}, diffusers "
           f"{env.get('diffusers', '?')}, {env.get('date_utc', '?')}. Command: `{env.get('command', '?')}`. "
           f"Source: `{os.path.relpath(path, REPO)}`. One step = UNet + scheduler step, random weights, published architectures.",
           "",
           "| model | batch | dtype | eager p50 ms | reduce-overhead p50 ms | max-autotune p50 ms | best samples/s | peak GiB | "
           "VAE decode ms (eager) |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    by = {}
    for r in d["results"]:
        by.setdefault((r["model"], r["batch"], r["dtype"]), {})[r["mode"]] = r
    for (model, batch, dtype), modes in sorted(by.items()):
        def cell(m):
            r = modes.get(m)
            if not r:
                return ""
            return fmt(r["step_ms_p50"], 3) if r.get("status") == "ok" else r.get("status", "?")
        ok = [r for r in modes.values() if r.get("status") == "ok"]
        best = max(ok, key=lambda r: r["samples_per_s"]) if ok else None
        out.append(f"| {model} | {batch} | {dtype} | {cell('eager')} | {cell('reduce-overhead')} | {cell('max-autotune')} | "
                   f"{fmt(best['samples_per_s'], 0) if best else ''} | "
                   f"{fmt(max(r['peak_mem_bytes'] for r in ok) / 2**30, 2) if ok else ''} | "
                   f"{fmt((modes.get('eager') or {}).get('vae_decode_ms_p50'), 2)} |")
    if d.get("skipped"):
        out += ["", f"{len(d['skipped'])} combinations skipped over the time budget."]
    if d.get("ratios"):
        out += ["", "| model | batch | dtype | peer | diffrt/peer (p50) |", "|---|---:|---|---|---:|"]
        out += [f"| {x['model']} | {x['batch']} | {x['dtype']} | {x['peer_mode']} | {x['ratio_diffrt_over_peer']:.2f} |"
                for x in d["ratios"]]
    return out


def load_diffrt_bench(folder, explicit=None):
    """Newest GPU diffrt.bench.v1 result per (name, height, width, batch, dtype, guidance)."""
    paths = explicit or sorted(glob.glob(os.path.join(folder, "*.json")))
    best = {}
    for p, d in iter_schema_files(paths, "diffrt.bench.v1"):
        env, w = d.get("env", {}), d.get("workload", {})
        if env.get("device") != "cuda" and not explicit:
            continue
        if not (d.get("results") or {}).get("step"):
            continue
        name = MODEL_ALIASES.get(d.get("name", "?"), d.get("name", "?"))
        key = (name, w.get("height"), w.get("width"), w.get("batch"), d.get("model", {}).get("dtype"),
               w.get("guidance_scale"))
        rank = (env.get("date_utc", ""), os.path.getmtime(p))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, p, d)
    return [(p, d) for _, p, d in sorted(best.values(), key=lambda x: (x[2].get("name", ""), x[2]["workload"]["batch"]))]


def p50(t):
    return t.get("p50_ms") if isinstance(t, dict) else None


def diffrt_section(entries, peer):
    peers = {}
    if peer:
        for r in peer.get("results", []):
            if r.get("status") == "ok":
                peers.setdefault((MODEL_ALIASES.get(r["model"], r["model"]), r["batch"], r["dtype"]), {})[r["mode"]] = r
    first = entries[0][1]["env"]
    out = [f"**Whole model, diffrt** — {first.get('gpu', '?')}, driver {first.get('driver', '?')}, CUDA runtime "
           f"{first.get('cuda_runtime', '?')}, {first.get('date_utc', '?')}. One step = UNet + fused scheduler step as the "
           "sampler runs it (CUDA-graph replay), p50 of the timed steps; random weights, published architectures. "
           "Peers: diffusers from the latest peer file, same GPU model, batch and dtype.",
           "",
           "| model | size | batch | dtype | CFG | diffrt ms/step | eager ms/step | TFLOP/s | VAE decode ms | "
           "diffusers eager ms/step | diffusers compile ms/step | diffrt/compile | target |",
           "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for path, d in entries:
        w, r, dv = d["workload"], d["results"], d.get("derived", {})
        name = MODEL_ALIASES.get(d.get("name", "?"), d.get("name", "?"))
        dtype = d.get("model", {}).get("dtype", "?")
        step, vae = p50(r.get("step")), p50(r.get("vae_decode"))
        pm = peers.get((name, w["batch"], dtype), {})
        eager = pm.get("eager")
        comp = [pm[m] for m in ("reduce-overhead", "max-autotune", "default") if m in pm]
        best = min(comp, key=lambda x: x["step_ms_p50"]) if comp else None
        checks = []
        for what, limit, label in TARGETS.get((name, w["batch"], dtype), []):
            v = step if what == "step" else vae
            if v is not None:
                checks.append(f"{label}: {'met' if v <= limit else 'not met'}")
        cfg = f"{w['guidance_scale']:g}" if w.get("cfg") else "no"
        out.append(f"| {name} | {w['width']}x{w['height']} | {w['batch']} | {dtype} | {cfg} | {fmt(step, 3)} | "
                   f"{fmt(p50(r.get('step_eager')), 3)} | {fmt(dv.get('step_tflops'))} | {fmt(vae, 2)} | "
                   f"{fmt(eager['step_ms_p50'], 3) if eager else ''} | "
                   f"{fmt(best['step_ms_p50'], 3) + ' (' + best['mode'] + ')' if best else ''} | "
                   f"{fmt(step / best['step_ms_p50'], 2) if best and step else ''} | {'; '.join(checks)} |")
    out += ["", "Sources: " + ", ".join(f"`{os.path.relpath(p, REPO)}`" for p, _ in entries) + "."]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--results", default=os.path.join(here, "..", "bench", "results"))
    ap.add_argument("--readme")
    ap.add_argument("--kernels", help="use this kernel results file instead of the latest")
    ap.add_argument("--peer", help="use this peer results file instead of the latest")
    ap.add_argument("--diffrt", action="append", help="use these diffrt bench files (repeatable) instead of the latest")
    args = ap.parse_args(argv)
    kp, kd = load_latest(args.results, "diffrt.kernel_bench.v1", args.kernels)
    pp, pd = load_latest(args.results, "diffrt.peer_compare.v1", args.peer)
    bench = load_diffrt_bench(args.results, args.diffrt)
    lines = ["_Generated by `scripts/bench_table.py` from `bench/results/`; do not edit by hand._", ""]
    if bench:
        lines += diffrt_section(bench, pd) + [""]
    if kd:
        lines += kernel_section(kp, kd) + [""]
    if pd:
        lines += peer_section(pp, pd) + [""]
    if not kd and not pd and not bench:
        lines += ["No GPU results yet: nothing has been measured (see bench/README.md)."]
    text = "\n".join(lines).rstrip() + "\n"
    if not args.readme:
        sys.stdout.write(text)
        return 0
    with open(args.readme) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme or readme.index(BEGIN) > readme.index(END):
        print(f"bench_table: {args.readme} lacks the lines {BEGIN} / {END}; add them where the table goes",
              file=sys.stderr)
        return 2
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(args.readme, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)
    print(f"bench_table: updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
