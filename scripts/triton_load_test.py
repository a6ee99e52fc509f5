#!/usr/bin/env python3
"""Load test of the diffrt Triton backend on this machine: requests/s and latency percentiles for the digits
model on CPU instances (1, 2 and 4 by default), against a local tritonserver on 127.0.0.1 that this script
starts and stops. Bounded: each configuration stops after --requests requests or --seconds seconds.

Run with the Triton venv's python (scripts/setup_triton.sh) after building:
    .venv-triton/bin/python scripts/triton_load_test.py
writes bench/results/triton_load_cpu_<UTC date>.json (schema diffrt.triton_load.v1: machine facts, command,
versions, one row per instance count) and prints the markdown table; --table FILE... re-renders results files,
and --readme PATH writes the table into PATH between <!-- TRITON_LOAD_TABLE_BEGIN --> and
<!-- TRITON_LOAD_TABLE_END --> (the table is generated, never typed).

Each configuration is one Triton model with N KIND_CPU instances (N diffrt sessions sharing one loaded model,
each with cores/N OpenMP threads, the backend's default), driven closed-loop by 2N concurrent clients so
every instance always has a request waiting. A request: one 16x16 image, DDIM --steps steps, a class label
and a seed that change per request.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BEGIN, END = "<!-- TRITON_LOAD_TABLE_BEGIN -->", "<!-- TRITON_LOAD_TABLE_END -->"
SCHEMA = "diffrt.triton_load.v1"


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def render_table(res):
    env, p = res["env"], res["params"]
    lines = [f"digits (16x16, 1 image per request, {p['sampler']} {p['steps']} steps), {p['protocol']}, "
             f"{env['cpu']} ({env['cores']} cores, load average {env['load_average_before'][0]} before), "
             f"{env['date_utc'][:16].replace('T', ' ')} UTC:", "",
             "| CPU instances | threads each | clients | requests | req/s | p50 ms | p90 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        lines.append(f"| {r['instances']} | {r['threads_per_instance']} | {r['concurrency']} | {r['requests']} | "
                     f"{r['requests_per_s']:.2f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['errors']} |")
    return "\n".join(lines) + "\n"


def write_readme(path, table):
    text = open(path).read()
    if BEGIN not in text or END not in text:
        sys.exit(f"{path}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    open(path, "w").write(head + BEGIN + "\n" + table + END + tail)


def run_config(mod, url, model, n_clients, max_requests, max_seconds, steps, sampler):
    import numpy as np

    lat, errors = [], []
    lock = threading.Lock()
    counter = [0]
    t_end = time.time() + max_seconds

    def make(i):
        vals = {"CLASS_LABELS": np.array([i % 10], np.int32), "SEED": np.array([i], np.uint64),
                "STEPS": np.array([steps], np.int32), "SAMPLER": np.array([sampler.encode()], dtype=object)}
        ins = []
        for k, v in vals.items():
            dt = {"int32": "INT32", "uint64": "UINT64", "object": "BYTES"}[str(v.dtype)]
            x = mod.InferInput(k, list(v.shape), dt)
            x.set_data_from_numpy(v)
            ins.append(x)
        return ins

    def client():
        c = mod.InferenceServerClient(url) if mod.__name__.endswith("grpc") else \
            mod.InferenceServerClient(url, network_timeout=600, connection_timeout=600)
        try:
            while time.time() < t_end:
                with lock:
                    if counter[0] >= max_requests:
                        return
                    i = counter[0]
                    counter[0] += 1
                t0 = time.perf_counter()
                try:
                    r = c.infer(model, make(i), outputs=[mod.InferRequestedOutput("IMAGES")])
                    assert r.as_numpy("IMAGES").shape == (1, 16, 16, 1)
                    with lock:
                        lat.append((time.perf_counter() - t0) * 1000.0)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(str(e)[:200])
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return lat, errors, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--diffrt", default=os.path.join(REPO, "build-cpu/diffrt"), help="the diffrt binary")
    ap.add_argument("--backends", default=os.path.join(REPO, "build-cpu/serving/triton/backends"),
                    help="Triton backend directory holding diffrt/libtriton_diffrt.so")
    ap.add_argument("--instances", default="1,2,4", help="instance counts to measure (default 1,2,4)")
    ap.add_argument("--clients-per-instance", type=int, default=2, help="concurrent clients per instance (2)")
    ap.add_argument("--requests", type=int, default=200, help="requests per configuration at most (200)")
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds per configuration at most (40)")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps per request (20)")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--out", help="results JSON (default bench/results/triton_load_cpu_<date>.json)")
    ap.add_argument("--table", nargs="+", metavar="FILE", help="only print the tables of these results files")
    ap.add_argument("--readme", help="also write the table into this file between the markers")
    args = ap.parse_args()

    if args.table:
        table = "\n".join(render_table(json.load(open(f))) for f in args.table)
        sys.stdout.write(table)
        if args.readme:
            write_readme(args.readme, table)
        return 0

    if not (1 <= args.requests <= 100000 and 0 < args.seconds <= 3600):
        ap.error("--requests in [1, 100000], --seconds in (0, 3600]")
    counts = [int(x) for x in args.instances.split(",")]
    if not all(1 <= n <= 64 for n in counts):
        ap.error("--instances: counts in [1, 64]")
    import pytriton
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    exe = os.path.join(os.path.dirname(pytriton.__file__), "tritonserver", "bin", "tritonserver")
    for f in (args.diffrt, exe, os.path.join(args.backends, "diffrt", "libtriton_diffrt.so")):
        if not os.path.exists(f):
            sys.exit(f"missing {f} (build first; make the venv with scripts/setup_triton.sh)")

    cores = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="diffrt_triton_load_")
    proc = None
    try:
        drt = os.path.join(tmp, "digits.drt")
        subprocess.run([args.diffrt, "convert", os.path.join(REPO, "models/digits"), "-o", drt, "-q"], check=True)
        repo = os.path.join(tmp, "repo")
        for n in counts:
            subprocess.run([sys.executable, os.path.join(REPO, "scripts/triton_repo.py"), drt, "--repo", repo,
                            "--name", f"digits_i{n}", "--instances", str(n)], check=True, stdout=subprocess.DEVNULL)
        http_port, grpc_port = free_ports(2)
        log = open(os.path.join(tmp, "server.log"), "w")
        proc = subprocess.Popen([exe, "--model-repository", repo, "--backend-directory", args.backends,
                                 "--http-address=127.0.0.1", f"--http-port={http_port}",
                                 "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}", "--allow-metrics=false"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, OMP_WAIT_POLICY="passive"))
        t_end = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > t_end:
                log.flush()
                sys.exit("tritonserver did not become ready:\n" + open(os.path.join(tmp, "server.log")).read()[-3000:])
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2", timeout=5) as r:
            server_meta = json.load(r)
        mod = grpcclient if args.protocol == "grpc" else httpclient
        url = f"127.0.0.1:{grpc_port if args.protocol == 'grpc' else http_port}"
        version = subprocess.run([args.diffrt, "--version"], capture_output=True, text=True).stdout.strip()
        load_before = os.getloadavg()
        results = []
        for n in counts:
            model = f"digits_i{n}"
            clients = n * args.clients_per_instance
            run_config(mod, url, model, clients, 2 * n, 60, args.steps, args.sampler)  # warm-up: every session
            lat, errors, wall = run_config(mod, url, model, clients, args.requests, args.seconds, args.steps,
                                           args.sampler)
            row = {"instances": n, "threads_per_instance": max(1, cores // n), "concurrency": clients,
                   "requests": len(lat), "errors": len(errors), "wall_s": round(wall, 3),
                   "requests_per_s": len(lat) / wall if wall > 0 else 0.0,
                   "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
                   "mean_ms": sum(lat) / len(lat) if lat else float("nan"),
                   "first_errors": errors[:3]}
            results.append(row)
            print(f"instances {n}: {row['requests']} requests in {wall:.1f} s, {row['requests_per_s']:.2f} req/s, "
                  f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {row['errors']} errors", flush=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        res = {"schema": SCHEMA,
               "env": {"date_utc": now.isoformat(timespec="seconds"), "cpu": cpu_model(), "cores": cores,
                       "host_kind": "CPU only (no GPU)", "os": platform.platform(),
                       "load_average_before": [round(x, 2) for x in load_before],
                       "load_average_after": [round(x, 2) for x in os.getloadavg()],
                       "diffrt": version, "tritonserver": server_meta.get("version"),
                       "tritonclient": importlib.metadata.version("tritonclient"), "python": platform.python_version()},
               "command": " ".join([os.path.relpath(sys.executable, REPO) if sys.executable.startswith(REPO)
                                    else sys.executable, os.path.relpath(os.path.abspath(__file__), REPO)]
                                   + sys.argv[1:]),
               "params": {"model": "models/digits", "steps": args.steps, "sampler": args.sampler,
                          "protocol": args.protocol, "clients_per_instance": args.clients_per_instance,
                          "max_requests": args.requests, "max_seconds": args.seconds},
               "results": results}
        out = args.out or os.path.join(REPO, "bench/results", f"triton_load_cpu_{now.strftime('%Y%m%dT%H%M%SZ')}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        print(f"wrote {out}")
        table = render_table(res)
        sys.stdout.write(table)
        if args.readme:
            write_readme(args.readme, table)
        return 0 if all(r["errors"] == 0 and r["requests"] > 0 for r in results) else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
