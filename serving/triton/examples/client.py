#!/usr/bin/env python3
"""Query a diffrt model served by Triton with tritonclient and save the images (PGM/PPM: no imaging library).

    .venv-triton/bin/python serving/triton/examples/client.py --url 127.0.0.1:8001 --model digits \
        --class-label 3 --seed 7 --steps 20 --sampler ddim -o digit.pgm
    # text-conditioned models take prompt embeddings [B, 77, D] saved as .npy:
    .venv-triton/bin/python serving/triton/examples/client.py --model sd15 --prompt-embeds pos.npy \
        --negative-prompt-embeds neg.npy --guidance-scale 7.5 -o out.ppm
    # decoupled models stream progress; Ctrl-C cancels the request on the server:
    .venv-triton/bin/python serving/triton/examples/client.py --model sd15_stream --stream ...

--http uses the HTTP endpoint (default port 8000) instead of gRPC (default port 8001). Images i of a
request are written as <stem>_<i>.<ext> when there are several.
"""
import argparse
import os
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def build_inputs(mod, a):
    vals = {}
    if a.class_label is not None:
        vals["CLASS_LABELS"] = np.array(a.class_label, np.int32)
    if a.prompt_embeds:
        vals["PROMPT_EMBEDS"] = np.load(a.prompt_embeds).astype(np.float32)
    if a.negative_prompt_embeds:
        vals["NEGATIVE_PROMPT_EMBEDS"] = np.load(a.negative_prompt_embeds).astype(np.float32)
    if a.prompt is not None:
        vals["PROMPT"] = np.array([a.prompt.encode()], dtype=object)
    for name, v, dt in (("SEED", a.seed, np.uint64), ("STEPS", a.steps, np.int32),
                        ("GUIDANCE_SCALE", a.guidance_scale, np.float32), ("NUM_IMAGES", a.num_images, np.int32),
                        ("HEIGHT", a.height, np.int32), ("WIDTH", a.width, np.int32)):
        if v is not None:
            vals[name] = np.array([v], dt)
    if a.sampler:
        vals["SAMPLER"] = np.array([a.sampler.encode()], dtype=object)
    inputs = []
    for name, arr in vals.items():
        dt = "BYTES" if arr.dtype == object else {"int32": "INT32", "uint64": "UINT64", "float32": "FP32"}[str(arr.dtype)]
        x = mod.InferInput(name, list(arr.shape), dt)
        x.set_data_from_numpy(arr)
        inputs.append(x)
    return inputs


def save(images, path):
    """images: uint8 [N, H, W, C], C = 1 (PGM) or 3 (PPM)."""
    stem, ext = os.path.splitext(path)
    for i, img in enumerate(images):
        h, w, c = img.shape
        out = path if len(images) == 1 else f"{stem}_{i}{ext}"
        with open(out, "wb") as f:
            f.write(f"{'P5' if c == 1 else 'P6'}\n{w} {h}\n255\n".encode())
            f.write(np.ascontiguousarray(img[..., :3] if c > 3 else img).tobytes())
        print(f"wrote {out} ({w}x{h}, {c} channel{'s' if c > 1 else ''})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="server address (default 127.0.0.1:8001, or :8000 with --http)")
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--model", required=True)
    ap.add_argument("--stream", action="store_true", help="decoupled model: print progress per step")
    ap.add_argument("--class-label", type=int, nargs="+")
    ap.add_argument("--prompt-embeds")
    ap.add_argument("--negative-prompt-embeds")
    ap.add_argument("--prompt")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance-scale", type=float)
    ap.add_argument("--num-images", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--sampler")
    ap.add_argument("-o", "--output", default="out.pnm")
    a = ap.parse_args()
    if a.stream and a.http:
        ap.error("--stream needs gRPC (drop --http)")
    mod = httpclient if a.http else grpcclient
    url = a.url or ("127.0.0.1:8000" if a.http else "127.0.0.1:8001")
    client = mod.InferenceServerClient(url)
    inputs = build_inputs(mod, a)
    if not a.stream:
        images = client.infer(a.model, inputs).as_numpy("IMAGES")
        save(images, a.output)
        return 0
    responses = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer(a.model, inputs)
        while True:
            result, error = responses.get()
            if error is not None:
                print(f"error: {error}", file=sys.stderr)
                return 1
            images = result.as_numpy("IMAGES")
            if images is not None:
                print()
                save(images, a.output)
                return 0
            print(f"\rstep {int(result.as_numpy('STEP')[0])}/{int(result.as_numpy('TOTAL')[0])}", end="", flush=True)
    except KeyboardInterrupt:
        print("\ncancelling", file=sys.stderr)
        client.stop_stream(cancel_requests=True)
        return 130
    finally:
        client.stop_stream()


if __name__ == "__main__":
    sys.exit(main())
