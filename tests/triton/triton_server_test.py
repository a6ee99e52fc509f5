#!/usr/bin/env python3
"""End-to-end test of the diffrt Triton backend (run by triton_server_test.sh with .venv-triton's python).

Converts the bundled digits model and the tiny SD fixture, writes a model repository with
scripts/triton_repo.py, starts the real `tritonserver` (nvidia-pytriton's) on 127.0.0.1 with free ports
and the built backend, and checks with the real tritonclient over HTTP and gRPC:
  * images byte-equal to the PNGs `diffrt sample` writes with the same settings (digits: one image, a
    batch of four, guidance, the model's defaults; SD fixture: prompt embeddings with guidance);
  * decoupled streaming: one (STEP, TOTAL) response per step, then the images;
  * cancellation over gRPC (decoupled stream and a plain request) stops sampling early, the server
    stays healthy and the next request is served at once;
  * concurrent clients (HTTP and gRPC, two instances) each get their own reproducible images;
  * bad requests are refused with clear messages (and HTTP 400 for argument errors) while the server
    stays healthy;
then shuts the server down and checks it exits cleanly.
"""
import argparse
import concurrent.futures
import json
import math
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

FAILURES = []
PASSED = []
SERVERS = []  # started servers, stopped by main() whatever happens


def check(name):
    def wrap(fn):
        def run(*a, **kw):
            t0 = time.time()
            try:
                fn(*a, **kw)
                PASSED.append(name)
                print(f"ok   {name} ({time.time() - t0:.1f} s)", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                FAILURES.append(name)
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return run
    return wrap


# ---- PNG reading (8-bit grey/RGB/RGBA, not interlaced: what diffrt writes) --------------------------
def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
    w, h, depth, color, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0, ihdr
    c = {0: 1, 2: 3, 6: 4}[color]
    raw = zlib.decompress(idat)
    stride = w * c
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - c] if x >= c else 0
            b = prev[x]
            cc = prev[x - c] if x >= c else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, c)


def png_images(path, n, h, w):
    """The n images of a diffrt PNG grid (near-square columns, 2-pixel gaps when n > 1): [n, h, w, c]."""
    grid = read_png(path)
    cols = min(int(math.ceil(math.sqrt(n))), n)
    pad = 2 if n > 1 else 0
    return np.stack([grid[(i // cols) * (h + pad):(i // cols) * (h + pad) + h,
                          (i % cols) * (w + pad):(i % cols) * (w + pad) + w] for i in range(n)])


# ---- requests -------------------------------------------------------------------------------------------
def make_inputs(mod, values):
    inputs = []
    for name, v in values.items():
        arr = np.asarray(v)
        dt = "BYTES" if arr.dtype == object else np_to_triton_dtype(arr.dtype)
        inp = mod.InferInput(name, list(arr.shape), dt)
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return inputs


def scalar(v, dtype):
    return np.array([v], dtype=dtype)


def text(s):
    return np.array([s.encode() if isinstance(s, str) else s], dtype=object)


def digits_req(seed, label, steps=10, sampler="ddim", **extra):
    r = {"CLASS_LABELS": np.array(label if isinstance(label, list) else [label], np.int32),
         "SEED": scalar(seed, np.uint64)}
    if steps is not None:
        r["STEPS"] = scalar(steps, np.int32)
    if sampler is not None:
        r["SAMPLER"] = text(sampler)
    r.update(extra)
    return r


class Server:
    def __init__(self, exe, repo, backends, log_path):
        self.ports = free_ports(2)
        self.http_url = f"127.0.0.1:{self.ports[0]}"
        self.grpc_url = f"127.0.0.1:{self.ports[1]}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        cmd = [exe, "--model-repository", repo, "--backend-directory", backends,
               "--http-address=127.0.0.1", f"--http-port={self.ports[0]}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.ports[1]}",
               "--allow-metrics=false", "--exit-on-error=false", "--strict-readiness=false",
               "--exit-timeout-secs=20"]
        env = dict(os.environ, OMP_WAIT_POLICY="passive")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def wait_ready(self, timeout=90):
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"tritonserver not ready after {timeout} s:\n{self.tail()}")

    def tail(self, n=60):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=40):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise RuntimeError("tritonserver did not exit within %d s of SIGTERM" % timeout)
        self.log.close()
        return self.proc.returncode


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", required=True)
    ap.add_argument("--diffrt", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    import pytriton
    exe = os.path.join(os.path.dirname(pytriton.__file__), "tritonserver", "bin", "tritonserver")
    tmp = tempfile.mkdtemp(prefix="diffrt_triton_")
    try:
        run(args, exe, tmp)
    except Exception as e:  # noqa: BLE001 - a setup step failed: report it, then stop the server
        FAILURES.append("setup")
        print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
        for s in SERVERS:
            print(s.tail(), flush=True)
    finally:
        for server in SERVERS:
            try:
                rc = server.stop()
                print(f"tritonserver exited with {rc}", flush=True)
                if rc not in (0, -signal.SIGTERM):
                    FAILURES.append("server shutdown")
                    print(server.tail(), flush=True)
            except RuntimeError as e:
                FAILURES.append("server shutdown")
                print(f"FAIL server shutdown: {e}", flush=True)
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(PASSED)} passed, {len(FAILURES)} failed", flush=True)
    if FAILURES:
        print("failed:", ", ".join(FAILURES))
    return 1 if FAILURES or not PASSED else 0


def sample_cli(args, out, *flags):
    subprocess.run([args.diffrt, "sample", "-q", "--threads", "1", "-o", out, *flags], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def run(args, exe, tmp):
    src, diffrt = args.source, args.diffrt
    sd_fx = os.path.join(src, "tests/fixtures/sd/sd1_tiny")
    digits = os.path.join(tmp, "digits.drt")
    sd = os.path.join(tmp, "sd.drt")
    subprocess.run([diffrt, "convert", os.path.join(src, "models/digits"), "-o", digits, "-q"], check=True)
    subprocess.run([diffrt, "convert", os.path.join(sd_fx, "pipeline"), "-o", sd, "-q"], check=True)
    # A pipeline with its CLIP text encoder and tokenizer (as tests/cli/prompt_cli_test.sh assembles it): PROMPT.
    sd_dir = os.path.join(src, "tests/fixtures/sd")
    text_pipe = os.path.join(tmp, "sd_text_pipeline")
    os.makedirs(text_pipe)
    for part in ("scheduler", "unet", "vae"):
        shutil.copytree(os.path.join(sd_fx, "pipeline", part), os.path.join(text_pipe, part))
    for part in ("text_encoder", "tokenizer"):
        shutil.copytree(os.path.join(sd_dir, "clip_tiny_sd1", part), os.path.join(text_pipe, part))
    shutil.copy(os.path.join(sd_dir, "sd1_text", "model_index.json"), text_pipe)
    sd_text = os.path.join(tmp, "sd_text.drt")
    subprocess.run([diffrt, "convert", text_pipe, "-o", sd_text, "-q"], check=True)

    # The repository: scripts/triton_repo.py as a user runs it.
    repo = os.path.join(tmp, "repo")
    mk = [sys.executable, os.path.join(src, "scripts/triton_repo.py"), "--repo", repo]
    subprocess.run(mk + [digits, "--name", "digits", "--instances", "2", "--threads", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(mk + [digits, "--name", "digits_stream", "--decoupled", "--threads", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(mk + [digits, "--name", "digits_tight", "--threads", "1", "--memory-limit-bytes", "4000000"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(mk + [sd, "--name", "sd", "--threads", "1", "--copy"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(mk + [sd_text, "--name", "sd_text", "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
    # Models that must fail to load, each with a message naming the problem (the others still serve).
    garbage = os.path.join(tmp, "garbage.drt")
    with open(garbage, "wb") as f:
        f.write(b"DRT\x00not a model file" * 10)
    subprocess.run(mk + [garbage, "--name", "broken_file"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(mk + [digits, "--name", "broken_param"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(repo, "broken_param", "config.pbtxt"), "a") as f:
        f.write('parameters { key: "thread" value: { string_value: "2" } }\n')
    check_examples(src, mk)

    # References from `diffrt sample` (PNG bytes), while the server starts.
    server = Server(exe, repo, args.backends, os.path.join(tmp, "tritonserver.log"))
    SERVERS.append(server)
    ref = {}
    ref["d1"] = png_images(sample_cli(args, os.path.join(tmp, "d1.png"), "-m", digits, "--class", "3", "--seed", "7",
                                      "--sampler", "ddim", "--steps", "10"), 1, 16, 16)
    ref["d4"] = png_images(sample_cli(args, os.path.join(tmp, "d4.png"), "-m", digits, "--class", "1,2,3,4", "-b", "4",
                                      "--seed", "11", "--sampler", "ddim", "--steps", "10"), 4, 16, 16)
    ref["dg"] = png_images(sample_cli(args, os.path.join(tmp, "dg.png"), "-m", digits, "--class", "8", "--seed", "5",
                                      "--guidance-scale", "2", "--sampler", "ddpm", "--steps", "20"), 1, 16, 16)
    ref["dk"] = png_images(sample_cli(args, os.path.join(tmp, "dk.png"), "-m", digits, "--class", "2", "--seed", "9",
                                      "--sampler", "dpmpp-2m", "--karras", "--steps", "12"), 1, 16, 16)
    ref["ddef"] = png_images(sample_cli(args, os.path.join(tmp, "ddef.png"), "-m", digits, "--class", "6", "--seed",
                                        "3"), 1, 16, 16)
    for s in range(4):
        ref[f"c{s}"] = png_images(sample_cli(args, os.path.join(tmp, f"c{s}.png"), "-m", digits, "--class", str(s),
                                             "--seed", str(100 + s), "--sampler", "ddim", "--steps", "8"), 1, 16, 16)
    P = os.path.join(sd_fx, "pipelines/ddim10_g7.5")
    ref["sd"] = png_images(sample_cli(args, os.path.join(tmp, "sd.png"), "-m", sd, "--prompt-embeds",
                                      f"{P}/prompt_embeds.npy", "--negative-prompt-embeds",
                                      f"{P}/negative_prompt_embeds.npy", "--guidance-scale", "7.5", "--sampler",
                                      "ddim", "--steps", "10", "--seed", "10", "-H", "16", "-W", "16"), 1, 16, 16)
    ref["sd_text"] = png_images(sample_cli(args, os.path.join(tmp, "sd_text.png"), "-m", sd_text, "--prompt",
                                           "a red cat", "--negative-prompt", "blurry", "--sampler", "ddim", "--steps",
                                           "6", "--seed", "12", "-H", "16", "-W", "16"), 1, 16, 16)
    sd_embeds = (np.load(f"{P}/prompt_embeds.npy").astype(np.float32),
                 np.load(f"{P}/negative_prompt_embeds.npy").astype(np.float32))

    server.wait_ready()
    print(f"tritonserver ready: http {server.http_url}, grpc {server.grpc_url}", flush=True)
    http = httpclient.InferenceServerClient(server.http_url, concurrency=4, network_timeout=300,
                                            connection_timeout=300)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)

    test_load_errors(http)
    test_images(http, grpc, ref, sd_embeds)
    test_streaming(server, ref)
    test_cancel_stream(server, ref)
    test_cancel_unary(server, grpc, ref)
    test_concurrent(server, ref)
    test_bad_requests(server, http, grpc, ref, sd_embeds)
    test_raw_http(server, ref)
    test_example_client(server, ref, os.path.join(src, "serving/triton/examples/client.py"), tmp)
    test_healthy_after(server, http, grpc, ref)
    http.close()  # an open keep-alive connection would hold the server's shutdown for its exit timeout
    grpc.close()
    return server


def check_examples(src, mk):
    """The committed config examples are what scripts/triton_repo.py writes."""
    @check("committed config.pbtxt examples match scripts/triton_repo.py")
    def t():
        for name, flags in (("digits", ["--instances", "2"]), ("sd_stream", ["--decoupled", "--kind", "gpu"])):
            want = subprocess.run(mk[:2] + ["unused.drt", "--repo", "unused", "--name", name, "--config-only"] + flags,
                                  check=True, capture_output=True, text=True).stdout
            have = open(os.path.join(src, f"serving/triton/examples/{name}/config.pbtxt")).read()
            assert have == want, f"serving/triton/examples/{name}/config.pbtxt differs from the script's output"
    t()


def test_load_errors(http):
    @check("models that cannot load are UNAVAILABLE with the reason; the good ones are ready")
    def t():
        index = {m["name"]: m for m in http.get_model_repository_index()}
        for m in ("digits", "digits_stream", "digits_tight", "sd"):
            assert index[m].get("state") == "READY", index[m]
        for m, want in (("broken_file", "not a diffrt model file"), ("broken_param", "unknown parameter 'thread'")):
            assert index[m].get("state") == "UNAVAILABLE", index[m]
            assert want in index[m].get("reason", ""), index[m]
            print(f"     -> {m}: {index[m]['reason'][:160]}")
    t()


def infer(client, model, values, outputs=None):
    mod = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    outs = [mod.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(model, make_inputs(mod, values), outputs=outs)


def test_images(http, grpc, ref, sd_embeds):
    for proto, client in (("http", http), ("grpc", grpc)):
        @check(f"{proto}: digits image equals `diffrt sample` (class 3, seed 7, ddim 10)")
        def t1():
            img = infer(client, "digits", digits_req(7, 3)).as_numpy("IMAGES")
            assert img.dtype == np.uint8 and img.shape == (1, 16, 16, 1), (img.dtype, img.shape)
            assert np.array_equal(img, ref["d1"]), f"{np.count_nonzero(img != ref['d1'])} bytes differ"
        t1()

    @check("http: digits batch of 4 (labels 1,2,3,4; NUM_IMAGES from the labels) equals `diffrt sample -b 4`")
    def t2():
        img = infer(http, "digits", digits_req(11, [1, 2, 3, 4]), outputs=["IMAGES"]).as_numpy("IMAGES")
        assert img.shape == (4, 16, 16, 1), img.shape
        assert np.array_equal(img, ref["d4"]), f"{np.count_nonzero(img != ref['d4'])} bytes differ"
        # Philox: image i of a batch is the batch-of-one image with the same seed and index 0 only for i = 0.
        one = infer(http, "digits", digits_req(11, 1, NUM_IMAGES=scalar(1, np.int32))).as_numpy("IMAGES")
        assert np.array_equal(one[0], img[0])
    t2()

    @check("grpc: digits with guidance 2, ddpm 20 steps equals `diffrt sample`")
    def t3():
        img = infer(grpc, "digits", digits_req(5, 8, steps=20, sampler="ddpm",
                                               GUIDANCE_SCALE=scalar(2.0, np.float32))).as_numpy("IMAGES")
        assert np.array_equal(img, ref["dg"]), f"{np.count_nonzero(img != ref['dg'])} bytes differ"
    t3()

    @check("http: digits with DPM++ 2M Karras (SAMPLER dpmpp-2m, KARRAS) equals `diffrt sample --sampler dpmpp-2m --karras`")
    def t3k():
        img = infer(http, "digits", digits_req(9, 2, steps=12, sampler="dpmpp-2m",
                                               KARRAS=np.array([True]))).as_numpy("IMAGES")
        assert np.array_equal(img, ref["dk"]), f"{np.count_nonzero(img != ref['dk'])} bytes differ"
    t3k()

    @check("http: digits with the model's defaults (DDPM 1000 steps) equals `diffrt sample` defaults")
    def t4():
        img = infer(http, "digits", {"CLASS_LABELS": np.array([6], np.int32), "SEED": scalar(3, np.uint64)})
        img = img.as_numpy("IMAGES")
        assert np.array_equal(img, ref["ddef"]), f"{np.count_nonzero(img != ref['ddef'])} bytes differ"
    t4()

    for proto, client in (("http", http), ("grpc", grpc)):
        @check(f"{proto}: SD fixture from prompt embeddings (guidance 7.5 by default) equals `diffrt sample`")
        def t5():
            pos, neg = sd_embeds
            img = infer(client, "sd", {"PROMPT_EMBEDS": pos, "NEGATIVE_PROMPT_EMBEDS": neg,
                                       "SEED": scalar(10, np.uint64), "STEPS": scalar(10, np.int32),
                                       "SAMPLER": text("ddim"), "HEIGHT": scalar(16, np.int32),
                                       "WIDTH": scalar(16, np.int32)}).as_numpy("IMAGES")
            assert img.shape == (1, 16, 16, 3), img.shape
            assert np.array_equal(img, ref["sd"]), f"{np.count_nonzero(img != ref['sd'])} bytes differ"
        t5()

    for proto, client in (("http", http), ("grpc", grpc)):
        @check(f"{proto}: SD with its text encoder from PROMPT/NEGATIVE_PROMPT equals `diffrt sample --prompt`")
        def t6():
            img = infer(client, "sd_text", {"PROMPT": text("a red cat"), "NEGATIVE_PROMPT": text("blurry"),
                                            "SEED": scalar(12, np.uint64), "STEPS": scalar(6, np.int32),
                                            "SAMPLER": text("ddim"), "HEIGHT": scalar(16, np.int32),
                                            "WIDTH": scalar(16, np.int32)}).as_numpy("IMAGES")
            assert img.shape == (1, 16, 16, 3), img.shape
            assert np.array_equal(img, ref["sd_text"]), f"{np.count_nonzero(img != ref['sd_text'])} bytes differ"
        t6()


def stream_collect(url, model, values, timeout=120):
    """Runs one decoupled request over a gRPC stream; returns the list of responses (or errors)."""
    got = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        client.async_stream_infer(model, make_inputs(grpcclient, values))
        out = []
        t_end = time.time() + timeout
        while time.time() < t_end:
            result, error = got.get(timeout=max(0.1, t_end - time.time()))
            out.append((result, error))
            if error is not None or result.as_numpy("IMAGES") is not None:
                return out
        raise TimeoutError("stream did not finish")
    finally:
        client.stop_stream()
        client.close()


def test_streaming(server, ref):
    @check("grpc stream: decoupled model sends STEP/TOTAL per step, then the images")
    def t():
        res = stream_collect(server.grpc_url, "digits_stream", digits_req(7, 3))
        assert all(e is None for _, e in res), [str(e) for _, e in res if e is not None]
        progress = [(int(r.as_numpy("STEP")[0]), int(r.as_numpy("TOTAL")[0])) for r, _ in res[:-1]]
        assert progress == [(s, 10) for s in range(1, 11)], progress
        img = res[-1][0].as_numpy("IMAGES")
        assert np.array_equal(img, ref["d1"]), "streamed images differ from `diffrt sample`"
    t()

    @check("grpc stream: a bad request on the decoupled model ends its stream with the error")
    def t2():
        res = stream_collect(server.grpc_url, "digits_stream", digits_req(7, 3, steps=-5))
        assert len(res) == 1 and res[0][1] is not None, res
        assert "STEPS = -5 must be >= 1" in str(res[0][1]), str(res[0][1])
    t2()


def test_cancel_stream(server, ref):
    @check("grpc stream: cancelling a long request stops sampling early; the next request runs at once")
    def t():
        got = queue.Queue()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client.start_stream(callback=lambda result, error: got.put((time.time(), result, error)))
        # DDPM 1000 steps, 16 images: tens of seconds on one thread.
        client.async_stream_infer("digits_stream", make_inputs(grpcclient, digits_req(1, 5, steps=None, sampler=None,
                                  NUM_IMAGES=scalar(16, np.int32))))
        stamps = []
        while len(stamps) < 4:
            ts, result, error = got.get(timeout=60)
            assert error is None, error
            stamps.append((ts, int(result.as_numpy("STEP")[0])))
        per_step = (stamps[-1][0] - stamps[0][0]) / (stamps[-1][1] - stamps[0][1])
        remaining = (1000 - stamps[-1][1]) * per_step
        client.stop_stream(cancel_requests=True)
        client.close()
        t0 = time.time()
        res = stream_collect(server.grpc_url, "digits_stream", digits_req(7, 3))  # the same (only) instance
        waited = time.time() - t0
        assert res[-1][1] is None and np.array_equal(res[-1][0].as_numpy("IMAGES"), ref["d1"])
        assert waited < remaining / 4, f"next request took {waited:.1f} s; the long one had {remaining:.1f} s left"
        log = server.log_text()
        assert "cancelled by the client; sampling stopped after step" in log, "no cancellation in the server log"
        print(f"     ({per_step * 1000:.1f} ms/step, {remaining:.0f} s were left; next request {waited:.1f} s)")
    t()


def test_cancel_unary(server, grpc, ref):
    @check("grpc: cancelling a plain (non-streaming) request gets CANCELLED and frees the instance")
    def t():
        done = queue.Queue()
        before = server.log_text().count("cancelled by the client; sampling stopped after step")
        ctx = grpc.async_infer("digits_tight", make_inputs(
            grpcclient, digits_req(2, 4, steps=None, sampler=None)), callback=lambda result, error: done.put((result, error)))
        time.sleep(1.5)
        ctx.cancel()
        r, e = done.get(timeout=30)
        assert e is not None and "CANCELLED" in str(e).upper(), f"expected a cancellation, got {e}"
        t_end = time.time() + 30
        while time.time() < t_end:
            if server.log_text().count("cancelled by the client; sampling stopped after step") > before:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the backend did not report the cancellation within 30 s")
        img = infer(grpc, "digits_tight", digits_req(7, 3)).as_numpy("IMAGES")
        assert np.array_equal(img, ref["d1"])
    t()


def test_concurrent(server, ref):
    @check("8 concurrent clients (HTTP and gRPC, 2 instances) each get their own reproducible image")
    def t():
        def one(i):
            s = i % 4
            if i % 2:
                c = httpclient.InferenceServerClient(server.http_url, network_timeout=300, connection_timeout=300)
            else:
                c = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                img = infer(c, "digits", digits_req(100 + s, s, steps=8)).as_numpy("IMAGES")
            finally:
                c.close()
            return s, img
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(one, range(8)))
        for s, img in results:
            assert np.array_equal(img, ref[f"c{s}"]), f"client with seed {100 + s} got another image"
    t()


def expect_error(client, model, values, want, http_status=None):
    try:
        infer(client, model, values)
    except InferenceServerException as e:
        msg = e.message() or str(e)
        assert want in msg, f"expected '{want}' in: {msg}"
        if http_status is not None and isinstance(client, httpclient.InferenceServerClient):
            assert e.status() == str(http_status), f"HTTP status {e.status()}, expected {http_status}: {msg}"
        return msg
    raise AssertionError(f"request accepted; expected an error with '{want}'")


def test_bad_requests(server, http, grpc, ref, sd_embeds):
    pos, neg = sd_embeds
    cases = [
        ("wrong datatype (SEED as INT32)", "digits", {"SEED": np.array([1], np.int32)}, "SEED", 400),
        ("wrong shape (STEPS [2])", "digits", digits_req(1, 3, STEPS=np.array([5, 6], np.int32)), "STEPS", 400),
        ("wrong rank (PROMPT_EMBEDS [L, D])", "sd", {"PROMPT_EMBEDS": pos[0]}, "PROMPT_EMBEDS", 400),
        ("negative steps", "digits", digits_req(1, 3, steps=-5), "STEPS = -5 must be >= 1", 400),
        ("zero images", "digits", digits_req(1, 3, NUM_IMAGES=scalar(0, np.int32)), "NUM_IMAGES = 0", 400),
        ("unknown sampler", "digits", digits_req(1, 3, sampler="warp9"), 'unknown sampler \"warp9\"; supported: ddpm', 400),
        ("Karras sigmas on DDIM", "digits", digits_req(1, 3, KARRAS=np.array([True])), "has no Karras sigmas", 400),
        ("NaN guidance", "digits", digits_req(1, 3, GUIDANCE_SCALE=scalar(float("nan"), np.float32)),
         "guidance_scale = nan", 400),
        ("huge batch", "digits", digits_req(1, 3, NUM_IMAGES=scalar(100000, np.int32)),
         "at most 16 per request", 400),
        ("label out of range", "digits", digits_req(1, 42), "class label 42", 400),
        ("size not a multiple of the UNet's factor", "digits", digits_req(1, 3, HEIGHT=scalar(18, np.int32)),
         "height = 18", 400),
        ("steps above the schedule", "digits", digits_req(1, 3, steps=5000), "exceeds num_train_timesteps", 400),
        ("embeddings for a class model", "digits", digits_req(1, 3, PROMPT_EMBEDS=pos), "not text-conditioned", 400),
        ("prompt for a class model", "digits", digits_req(1, 3, PROMPT=text("a cat")), "not text-conditioned", 400),
        ("prompt for a model without a text encoder", "sd", {"PROMPT": text("a cat")}, "no text encoder", 400),
        ("negative prompt alone", "sd_text", {"NEGATIVE_PROMPT": text("blurry")}, "NEGATIVE_PROMPT needs PROMPT", 400),
        ("text model without embeddings", "sd", {"SEED": scalar(1, np.uint64)}, "give prompt_embeds", 400),
        ("guidance without negative embeddings", "sd", {"PROMPT_EMBEDS": pos}, "needs negative_prompt_embeds", 400),
        ("embeddings of the wrong width", "sd", {"PROMPT_EMBEDS": pos[:, :, :7].copy(), "GUIDANCE_SCALE":
                                                 scalar(1.0, np.float32)}, "context_dim", 400),
        ("NaN in the embeddings", "sd", {"PROMPT_EMBEDS": np.full_like(pos, np.nan), "GUIDANCE_SCALE":
                                         scalar(1.0, np.float32)}, "NaN or infinity", 400),
        ("absurd size (the default CPU memory limit)", "digits", digits_req(1, 3, NUM_IMAGES=scalar(16, np.int32),
                                                 HEIGHT=scalar(8192, np.int32), WIDTH=scalar(8192, np.int32)),
         "bytes", 503),
        ("over the memory limit", "digits_tight", digits_req(1, 3, NUM_IMAGES=scalar(16, np.int32),
                                                             HEIGHT=scalar(256, np.int32), WIDTH=scalar(256, np.int32)),
         "bytes", 503),
    ]
    for name, model, values, want, status in cases:
        @check(f"bad request refused (HTTP and gRPC): {name}")
        def t():
            for client in (http, grpc):
                msg = expect_error(client, model, values, want, status)
                assert server.proc.poll() is None, "the server died"
            print(f"     -> {msg[:160]}")
        t()


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_raw_http(server, ref):
    """What the README's curl example sends: the Open Inference Protocol's JSON, no client library."""
    url = f"http://{server.http_url}/v2/models/digits/infer"

    @check("http JSON (the README's curl request): images as a JSON list equal `diffrt sample`")
    def t1():
        body = {"inputs": [
            {"name": "CLASS_LABELS", "datatype": "INT32", "shape": [1], "data": [3]},
            {"name": "SEED", "datatype": "UINT64", "shape": [1], "data": [7]},
            {"name": "STEPS", "datatype": "INT32", "shape": [1], "data": [10]},
            {"name": "SAMPLER", "datatype": "BYTES", "shape": [1], "data": ["ddim"]}],
            "outputs": [{"name": "IMAGES"}]}
        status, data = post(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert status == 200, (status, data[:300])
        out = json.loads(data)["outputs"][0]
        assert out["name"] == "IMAGES" and out["datatype"] == "UINT8" and out["shape"] == [1, 16, 16, 1], out
        img = np.array(out["data"], np.uint8).reshape(out["shape"])
        assert np.array_equal(img, ref["d1"])
    t1()

    @check("http generate and generate_stream (SSE progress) with JSON scalars, as the README's curl")
    def t3():
        body = json.dumps({"CLASS_LABELS": 3, "SEED": 7, "STEPS": 10, "SAMPLER": "ddim"}).encode()
        status, data = post(f"http://{server.http_url}/v2/models/digits/generate", body,
                            {"Content-Type": "application/json"})
        assert status == 200, (status, data[:300])
        img = np.array(json.loads(data)["IMAGES"], np.uint8)
        assert np.array_equal(img, ref["d1"].reshape(-1))
        status, data = post(f"http://{server.http_url}/v2/models/digits_stream/generate_stream", body,
                            {"Content-Type": "application/json"})
        assert status == 200, (status, data[:300])
        events = [json.loads(line[len("data: "):]) for line in data.decode().splitlines() if line.startswith("data: ")]
        assert [(e["STEP"], e["TOTAL"]) for e in events[:-1]] == [(s, 10) for s in range(1, 11)], events[:-1]
        assert np.array_equal(np.array(events[-1]["IMAGES"], np.uint8), ref["d1"].reshape(-1))
    t3()

    @check("http binary: a BYTES element whose length prefix lies is refused; the server stays up")
    def t2():
        raw = struct.pack("<I", 1000) + b"ddim"  # says 1000 bytes, carries 4
        header = json.dumps({"inputs": [
            {"name": "SAMPLER", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}},
            {"name": "CLASS_LABELS", "datatype": "INT32", "shape": [1], "data": [3]}]}).encode()
        status, data = post(url, header + raw, {"Content-Type": "application/octet-stream",
                                                "Inference-Header-Content-Length": str(len(header))})
        assert status == 400, (status, data[:300])
        print(f"     -> {data[:160].decode(errors='replace')}")
        assert server.proc.poll() is None
    t2()


def test_example_client(server, ref, client_py, tmp):
    def pgm(path):
        data = open(path, "rb").read()
        assert data.startswith(b"P5\n16 16\n255\n"), data[:20]
        return np.frombuffer(data[len(b"P5\n16 16\n255\n"):], np.uint8).reshape(1, 16, 16, 1)

    for label, flags in (("grpc", ["--url", server.grpc_url, "--model", "digits"]),
                         ("http", ["--http", "--url", server.http_url, "--model", "digits"]),
                         ("grpc stream", ["--url", server.grpc_url, "--model", "digits_stream", "--stream"])):
        @check(f"serving/triton/examples/client.py ({label}) saves the `diffrt sample` image")
        def t():
            out = os.path.join(tmp, "client.pgm")
            r = subprocess.run([sys.executable, client_py, *flags, "--class-label", "3", "--seed", "7", "--steps",
                                "10", "--sampler", "ddim", "-o", out], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            assert np.array_equal(pgm(out), ref["d1"])
            if "--stream" in flags:
                assert "step 10/10" in r.stdout, r.stdout[-300:]
        t()


def test_healthy_after(server, http, grpc, ref):
    @check("server live and ready after everything, and still right")
    def t():
        assert http.is_server_live() and http.is_server_ready() and grpc.is_server_ready()
        for m in ("digits", "digits_stream", "digits_tight", "sd"):
            assert http.is_model_ready(m), m
        img = infer(http, "digits", digits_req(7, 3)).as_numpy("IMAGES")
        assert np.array_equal(img, ref["d1"])
        # Statistics the backend reports (what the metrics endpoint exports).
        st = http.get_inference_statistics("digits")["model_stats"][0]["inference_stats"]
        assert int(st["success"]["count"]) >= 10 and int(st["fail"]["count"]) >= 10, st
    t()


if __name__ == "__main__":
    sys.exit(main())
