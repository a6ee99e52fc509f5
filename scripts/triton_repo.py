#!/usr/bin/env python3
"""Writes a Triton model repository that serves a converted diffrt model (.drt) with the diffrt backend.

    <repo>/<name>/config.pbtxt        the request contract (serving/triton/README.md), instances, parameters
    <repo>/<name>/1/model.drt         the model file (a symbolic link by default, or a copy)

Example:
    ./build/diffrt convert models/digits -o out/digits.drt
    python3 scripts/triton_repo.py out/digits.drt --repo out/triton_repo --name digits --instances 2
    tritonserver --model-repository out/triton_repo --backend-directory build/serving/triton/backends

Standard library only. The config written for given options is stable (serving/triton/examples/ hold two,
checked against this script by the Triton test).
"""
import argparse
import os
import shutil
import sys

# name, datatype, dims: every input is optional (the model's defaults apply); see the README's table.
INPUTS = [
    ("PROMPT", "TYPE_STRING", "[ 1 ]"),
    ("NEGATIVE_PROMPT", "TYPE_STRING", "[ 1 ]"),
    ("PROMPT_EMBEDS", "TYPE_FP32", "[ -1, -1, -1 ]"),
    ("NEGATIVE_PROMPT_EMBEDS", "TYPE_FP32", "[ -1, -1, -1 ]"),
    ("CLASS_LABELS", "TYPE_INT32", "[ -1 ]"),
    ("SEED", "TYPE_UINT64", "[ 1 ]"),
    ("STEPS", "TYPE_INT32", "[ 1 ]"),
    ("GUIDANCE_SCALE", "TYPE_FP32", "[ 1 ]"),
    ("NUM_IMAGES", "TYPE_INT32", "[ 1 ]"),
    ("HEIGHT", "TYPE_INT32", "[ 1 ]"),
    ("WIDTH", "TYPE_INT32", "[ 1 ]"),
    ("SAMPLER", "TYPE_STRING", "[ 1 ]"),
    ("KARRAS", "TYPE_BOOL", "[ 1 ]"),
    ("INIT_IMAGE", "TYPE_FP32", "[ -1, -1, -1, -1 ]"),  # [N, H, W, C] in [0, 1]: image-to-image
    ("MASK", "TYPE_FP32", "[ -1, -1, -1 ]"),            # [N, H, W] in [0, 1]: inpainting, white = repaint
    ("STRENGTH", "TYPE_FP32", "[ 1 ]"),
]
OUTPUTS = [
    ("IMAGES", "TYPE_UINT8", "[ -1, -1, -1, -1 ]"),  # [N, H, W, C], C = 3 (RGB) or 1 (grey)
    ("STEP", "TYPE_INT32", "[ 1 ]"),                 # decoupled progress: steps done
    ("TOTAL", "TYPE_INT32", "[ 1 ]"),                # decoupled progress: steps in all
]


def config_text(args):
    out = [f'# Written by scripts/triton_repo.py: the diffrt backend\'s request contract (serving/triton/README.md).',
           f'name: "{args.name}"', 'backend: "diffrt"',
           '# Each request is its own batch (NUM_IMAGES); Triton does not merge requests.',
           'max_batch_size: 0']
    for name, dtype, dims in INPUTS:
        out.append(f'input {{ name: "{name}" data_type: {dtype} dims: {dims} optional: true }}')
    for name, dtype, dims in OUTPUTS:
        out.append(f'output {{ name: "{name}" data_type: {dtype} dims: {dims} }}')
    kind = "KIND_GPU" if args.kind == "gpu" else "KIND_CPU"
    group = f'instance_group {{ count: {args.instances} kind: {kind}'
    if args.kind == "gpu" and args.gpus:
        group += " gpus: [ " + ", ".join(str(int(g)) for g in args.gpus.split(",")) + " ]"
    out.append(group + " }")
    if args.decoupled:
        out.append("# Streams a progress response (STEP, TOTAL) per sampling step, then the images.")
        out.append("model_transaction_policy { decoupled: true }")
    params = {"model_file": "model.drt", "max_num_images": str(args.max_num_images)}
    if args.threads:
        params["threads"] = str(args.threads)
    if args.memory_limit_bytes:
        params["memory_limit_bytes"] = str(args.memory_limit_bytes)
    if args.rng != "philox":
        params["rng"] = args.rng
    if args.kind == "gpu" and not args.deterministic:
        params["deterministic"] = "0"
    for k in sorted(params):
        out.append(f'parameters {{ key: "{k}" value: {{ string_value: "{params[k]}" }} }}')
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="converted model file (.drt), from `diffrt convert`")
    p.add_argument("--repo", required=True, help="model repository folder (created if missing)")
    p.add_argument("--name", help="Triton model name (default: the file's stem)")
    p.add_argument("--instances", type=int, default=1, help="model instances (sessions) per device (default 1)")
    p.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance kind: KIND_CPU or KIND_GPU")
    p.add_argument("--gpus", help="KIND_GPU: comma-separated device ids (default: every GPU)")
    p.add_argument("--decoupled", action="store_true", help="stream per-step progress (decoupled transaction policy)")
    p.add_argument("--max-num-images", type=int, default=16, help="images per request at most (default 16)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per instance (default: cores / instances)")
    p.add_argument("--memory-limit-bytes", type=int, default=0, help="per-session working-memory limit (0: none)")
    p.add_argument("--rng", choices=["philox", "torch"], default="philox", help="noise generator (default philox)")
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="GPU: fastest measured cuDNN algorithms (bytes may then differ between instances)")
    p.add_argument("--copy", action="store_true", help="copy the model file instead of linking it")
    p.add_argument("--config-only", action="store_true", help="print config.pbtxt and write nothing")
    args = p.parse_args(argv)
    if args.name is None:
        args.name = os.path.splitext(os.path.basename(args.model))[0]
    if not args.name or any(c in args.name for c in "/\\\"") or args.name in (".", ".."):
        p.error(f"--name: not a usable model name: {args.name!r}")
    if not 1 <= args.instances <= 256:
        p.error("--instances must be in [1, 256]")
    if not 1 <= args.max_num_images <= 4096:
        p.error("--max-num-images must be in [1, 4096]")
    if args.threads < 0 or args.memory_limit_bytes < 0:
        p.error("--threads and --memory-limit-bytes must be >= 0")
    if args.gpus and args.kind != "gpu":
        p.error("--gpus needs --kind gpu")
    text = config_text(args)
    if args.config_only:
        sys.stdout.write(text)
        return 0
    if not os.path.isfile(args.model):
        p.error(f"{args.model}: no such model file (convert one with `diffrt convert`)")
    model_dir = os.path.join(args.repo, args.name)
    version_dir = os.path.join(model_dir, "1")
    os.makedirs(version_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.pbtxt"), "w") as f:
        f.write(text)
    dst = os.path.join(version_dir, "model.drt")
    if os.path.lexists(dst):
        os.remove(dst)
    if args.copy:
        shutil.copyfile(args.model, dst)
    else:
        os.symlink(os.path.abspath(args.model), dst)
    print(model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
