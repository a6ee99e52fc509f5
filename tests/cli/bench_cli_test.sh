#!/usr/bin/env bash
# diffrt bench and diffrt profile through the real binary on the CPU backend (tiny fixture models): the bench
# JSON (schema diffrt.bench.v1) has every field with sane values, the Chrome trace parses, has one complete event
# per graph node with durations >= 0 and FLOPs that match an independent count from the graph JSON, and bad
# arguments are refused by name without writing anything.
set -euo pipefail
BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}; PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$BIN" convert "$SRC/tests/fixtures/sd/sd1_tiny/pipeline" -o "$T/sd.drt" -q 2>/dev/null
"$BIN" convert "$SRC/tests/fixtures/models/cifar_like" -o "$T/c.drt" -q
"$BIN" convert "$SRC/tests/fixtures/models/class_cond" -o "$T/cc.drt" -q
"$BIN" info "$T/sd.drt" --json >"$T/sd_info.json"

# ---- bench: text-conditioned latent model, CFG, random embeddings, trace in the same run ----
"$BIN" bench -m "$T/sd.drt" --device cpu -H 16 -W 16 --steps 2 --warmup 1 --repeat 3 --vae-repeat 2 \
  --json "$T/b.json" --trace "$T/bt.json" --name tiny_sd -q >"$T/b.txt"
grep -q "step (sampler loop)" "$T/b.txt"
grep -q "VAE decode" "$T/b.txt"
$PY - "$T/b.json" "$T/bt.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "diffrt.bench.v1" and d["complete"] is True and d["name"] == "tiny_sd", d.get("schema")
env = d["env"]
for k in ("date_utc", "command", "device", "host", "diffrt_version"):
    assert k in env, k
assert env["device"] == "cpu" and "bench" in env["command"] and "--repeat 3" in env["command"]
m = d["model"]
assert m["family"] == "unet2d_condition" and m["dtype"] == "fp32" and m["parameters"] > 0 and m["vae_nodes"] > 0
w = d["workload"]
assert w["batch"] == 1 and w["model_batch"] == 2 and w["cfg"] and w["guidance_scale"] == 7.5, w
assert w["height"] == 16 and w["latent_height"] == 8 and w["context_len"] == 77 and w["random_text_embeddings"]
assert w["sampler"] == "pndm" and w["steps"] == 2  # the pipeline's own PNDMScheduler, as diffusers
r = d["results"]
def timing(t, n):
    assert t is not None and t["n"] == n, t
    assert 0 < t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"] <= t["max_ms"], t
    assert t["min_ms"] <= t["mean_ms"] <= t["max_ms"], t
timing(r["step"], 3); timing(r["unet"], 3); timing(r["vae_decode"], 2); timing(r["run"], 2)
assert r["step_eager"] is None and r["unet_graph"] is None  # no CUDA graph on the CPU
assert r["sampler_runs"] == 2 and r["vae_finite"] is True and r["graph_used"] is False
f = d["flops"]
assert f["unet_call"] > 0 and f["step"] == f["unet_call"] and f["vae_decode"] > 0
assert abs(sum(f["unet_by_op"].values()) - f["unet_call"]) < 1e-6 * f["unet_call"]
x = d["derived"]
assert abs(x["step_ms_p50"] - r["step"]["p50_ms"]) < 1e-12
assert abs(x["step_tflops"] - f["step"] / (r["step"]["p50_ms"] * 1e9)) < 1e-9 * x["step_tflops"]
assert abs(x["images_per_s"] - 1 / (r["step"]["p50_ms"] / 1e3 * 2)) < 1e-6 * x["images_per_s"]
mem = d["memory"]
assert mem["peak_device_bytes"] is None and mem["peak_host_rss_bytes"] > 0 and mem["weights_bytes"] > 0
assert mem["unet_arena_bytes"] > 0 and mem["vae_arena_bytes"] > 0
assert d["trace"] == sys.argv[2] and [g["graph"] for g in d["profile"]] == ["unet", "vae_decode"]
t = json.load(open(sys.argv[2]))
assert len([e for e in t["traceEvents"] if e["ph"] == "X"]) == sum(g["nodes"] for g in t["otherData"]["graphs"])
print("bench json ok: step p50 %.3f ms" % r["step"]["p50_ms"])
PYEOF

# ---- profile: one event per node, durations >= 0, FLOPs recounted from the graph JSON ----
"$BIN" profile -m "$T/sd.drt" --device cpu -H 16 -W 16 --repeat 2 --warmup 1 -o "$T/p.json" --json "$T/ps.json" \
  2>"$T/p.err" >"$T/p.out"
grep -q "slowest nodes" "$T/p.err"
grep -q "^unet: " "$T/p.out"
$PY - "$T/p.json" "$T/sd_info.json" "$T/ps.json" <<'PYEOF'
import json, re, sys
t = json.load(open(sys.argv[1]))
info = json.load(open(sys.argv[2]))
summary = json.load(open(sys.argv[3]))
assert t["displayTimeUnit"] == "ms" and isinstance(t["traceEvents"], list)
od = t["otherData"]
assert od["schema"] == "diffrt.profile.v1" and od["env"]["device"] == "cpu"
graphs = {g["label"]: g for g in od["graphs"]}
assert set(graphs) == {"unet", "vae_decode"}, graphs
names = {e["args"]["name"]: e["tid"] for e in t["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
x = [e for e in t["traceEvents"] if e["ph"] == "X"]
unet = [e for e in x if e["tid"] == names["unet"]]
vae = [e for e in x if e["tid"] == names["vae_decode"]]
nodes = info["graph"]["nodes"]
assert len(unet) == len(nodes) == graphs["unet"]["nodes"], (len(unet), len(nodes))
assert len(vae) == graphs["vae_decode"]["nodes"] > 0
assert [e["name"] for e in unet] == [n["name"] for n in nodes]
for e in x:
    assert e["dur"] >= 0 and e["ts"] >= 0, e
    a = e["args"]
    for k in ("node", "op", "inputs", "output", "bytes", "flops", "gbps", "tflops"):
        assert k in a, (e["name"], k)
    assert a["bytes"] > 0 and a["flops"] >= 0
    assert e["cat"] == a["op"]
prev = None
for e in unet:  # compacted timeline: each node starts where the previous one ended
    if prev is not None:
        assert abs(e["ts"] - (prev["ts"] + prev["dur"])) < 1e-6, (prev["name"], e["name"])
    prev = e
shape = lambda s: [int(v) for v in re.findall(r"-?\d+", s.split(" ")[-1])]
def numel(s):
    n = 1
    for v in shape(s): n *= v
    return n
checked = 0
for n, e in zip(nodes, unet):  # FLOPs recounted independently from the graph JSON and the shapes
    a, out = n["attrs"], shape(e["args"]["output"])
    if n["op"] == "conv2d":
        want = 2 * numel(e["args"]["output"]) * a["cin"] * a["kh"] * a["kw"]
    elif n["op"] == "linear":
        want = 2 * numel(e["args"]["output"]) // a["out"] * a["in"] * a["out"]
    elif n["op"] == "attention":
        lq = numel(e["args"]["output"]) // out[0] // out[-1]
        lkv = lq if len(n["inputs"]) == 1 else numel(e["args"]["inputs"][1]) // out[0] // shape(e["args"]["inputs"][1])[-1]
        want = 4 * out[0] * a["heads"] * lq * lkv * a["head_dim"]
    elif n["op"] == "time_embedding":
        want = 2 * out[0] * (a["dim"] * a["out_dim"] + a["out_dim"] ** 2)
    else:
        want = 0
    assert abs(e["args"]["flops"] - want) <= 1e-9 * max(want, 1), (n["name"], e["args"]["flops"], want)
    checked += want > 0
assert checked > 20, checked
assert abs(sum(e["dur"] for e in unet) - graphs["unet"]["total_us"]) < 1e-3
assert [g["graph"] for g in summary["summary"]] == ["unet", "vae_decode"]
assert abs(sum(o["share"] for o in summary["summary"][0]["ops"]) - 1) < 1e-9
print("trace ok:", len(unet), "unet events,", len(vae), "vae events,", checked, "flop counts checked")
PYEOF

# ---- a sampler by name: DPM++ 2M Karras on a DDPM-config pixel model (NAME.from_config) ----
"$BIN" bench -m "$T/c.drt" --device cpu --steps 3 --warmup 0 --repeat 1 --no-unet --sampler dpmpp-2m --karras \
  --json "$T/k.json" -q >/dev/null
$PY - "$T/k.json" <<'PYEOF'
import json, sys
w = json.load(open(sys.argv[1]))["workload"]
assert w["sampler"] == "dpmpp-2m" and w["karras"] is True and w["steps"] == 3, w
assert w["scheduler"].startswith("DPMSolverMultistepScheduler (dpmpp-2m, karras)"), w["scheduler"]
PYEOF
if "$BIN" bench -m "$T/c.drt" --device cpu --steps 2 --sampler warp9 -q >/dev/null 2>"$T/e.txt"; then
  echo "bench accepted an unknown sampler"; exit 1
fi
grep -q 'unknown sampler "warp9"' "$T/e.txt"

# ---- pixel models: DDPM default, no VAE; class-conditional with guidance (null-class batch) ----
"$BIN" bench -m "$T/c.drt" --device cpu --steps 3 --warmup 0 --repeat 2 --no-unet --json "$T/c.json" -q >/dev/null
"$BIN" bench -m "$T/cc.drt" --device cpu --steps 2 --warmup 1 --repeat 1 -b 3 --guidance-scale 3 --json "$T/cc.json" -q >/dev/null
$PY - "$T/c.json" "$T/cc.json" <<'PYEOF'
import json, sys
c, cc = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert c["workload"]["sampler"] == "ddpm" and not c["workload"]["latent_model"] and not c["workload"]["cfg"]
assert c["results"]["vae_decode"] is None and c["results"]["unet"] is None and c["flops"]["vae_decode"] is None
assert c["results"]["step"]["n"] == 2 and c["name"] == "c"
w = cc["workload"]
assert w["cfg"] and w["batch"] == 3 and w["model_batch"] == 6 and len(w["class_labels"]) == 3, w
assert cc["results"]["step"]["n"] == 1 and cc["results"]["unet"]["n"] == 1
print("pixel bench ok")
PYEOF

# ---- errors: named, non-zero exit, nothing written ----
expect() {  # expect <exit code> <message part> <command...>
  local code=$1 want=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [[ $rc == "$code" ]] || { echo "exit $rc (want $code): $*: $out"; exit 1; }
  grep -qF -- "$want" <<<"$out" || { echo "expected '$want', got: $out"; exit 1; }
}
B=(bench -m "$T/sd.drt" --device cpu --json "$T/x.json" -q)
expect 2 "--repeat must be in" "$BIN" "${B[@]}" --repeat 0
expect 2 "--warmup must be in" "$BIN" "${B[@]}" --warmup -1
expect 2 "multiples of the VAE's factor" "$BIN" "${B[@]}" -H 17 -W 16
expect 2 "--context-len must be in" "$BIN" "${B[@]}" --context-len 0
expect 2 "not text-conditioned" "$BIN" bench -m "$T/c.drt" --device cpu --prompt-embeds "$T/none.npy" --json "$T/x.json"
expect 2 "neither text nor class conditioning" "$BIN" bench -m "$T/c.drt" --device cpu --guidance-scale 3 --json "$T/x.json"
expect 2 "--repeat must be in" "$BIN" profile -m "$T/sd.drt" --device cpu --repeat 0 -o "$T/x.json"
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect 4 "--device cuda" "$BIN" bench -m "$T/sd.drt" --device cuda --json "$T/x.json" -q
  expect 4 "--device cuda" "$BIN" profile -m "$T/sd.drt" --device cuda -o "$T/x.json"
fi
test ! -e "$T/x.json"
grep -q -- "--trace" <<<"$("$BIN" bench --help)"
grep -q -- "NVTX" <<<"$("$BIN" profile --help)"
echo "bench cli ok"
