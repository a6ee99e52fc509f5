#!/usr/bin/env python3
"""Renders the README performance table from the latest benchmark results in bench/results/.

Inputs (see bench/README.md): kernel results from diffrt_kernel_bench --json (schema diffrt.kernel_bench.v1) and
peer results from scripts/peer_compare.py --json (schema diffrt.peer_compare.v1). "Latest" = the newest
env.date_utc among files of that schema (file modification time breaks ties). Files with no results (no GPU,
aborted before the first case) are ignored.

Output: markdown on stdout, or, with --readme PATH, written into PATH between the lines
    <!-- BENCH_TABLE_BEGIN -->
    <!-- BENCH_TABLE_END -->
(the markers must already be there; the text between them is replaced, nothing else is touched).
The table is generated, never typed: re-run this after committing new results.

Usage: bench_table.py [--results bench/results] [--readme README.md] [--kernels FILE] [--peer FILE]
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


def load_latest(folder, schema, explicit=None):
    paths = [explicit] if explicit else sorted(glob.glob(os.path.join(folder, "*.json")))
    best = None
    for p in paths:
        try:
            with open(p) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(d, dict) or d.get("schema") != schema or not d.get("results"):
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
           "| model | batch | dtype | eager p50 ms | reduce-overhead p50 ms | max-autotune p50 ms | best samples/s | peak GiB |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
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
                   f"{fmt(max(r['peak_mem_bytes'] for r in ok) / 2**30, 2) if ok else ''} |")
    if d.get("skipped"):
        out += ["", f"{len(d['skipped'])} combinations skipped over the time budget."]
    if d.get("ratios"):
        out += ["", "| model | batch | dtype | peer | diffrt/peer (p50) |", "|---|---:|---|---|---:|"]
        out += [f"| {x['model']} | {x['batch']} | {x['dtype']} | {x['peer_mode']} | {x['ratio_diffrt_over_peer']:.2f} |"
                for x in d["ratios"]]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--results", default=os.path.join(here, "..", "bench", "results"))
    ap.add_argument("--readme")
    ap.add_argument("--kernels", help="use this kernel results file instead of the latest")
    ap.add_argument("--peer", help="use this peer results file instead of the latest")
    args = ap.parse_args(argv)
    kp, kd = load_latest(args.results, "diffrt.kernel_bench.v1", args.kernels)
    pp, pd = load_latest(args.results, "diffrt.peer_compare.v1", args.peer)
    lines = ["_Generated by `scripts/bench_table.py` from `bench/results/`; do not edit by hand._", ""]
    if kd:
        lines += kernel_section(kp, kd) + [""]
    if pd:
        lines += peer_section(pp, pd) + [""]
    if not kd and not pd:
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
