#!/usr/bin/env bash
# The whole GPU pass in one command, on a bare H100/H200 machine (see DESIGN.md "Working with the occasional
# GPU"): build for sm_90 only, run the GPU test suite (ctest -L gpu, JUnit), compute-sanitizer memcheck and
# racecheck on the kernel test binaries (reduced filters), the GPU benchmarks if any, and write everything
# under $OUT (default ./gpu_out) with a summary.md. Designed to finish inside one 10-minute device call
# (every step has its own timeout; total budget GPU_PASS_BUDGET_S, default 540 s).
# Whole-model benchmarks (`diffrt bench`, bench/README.md) run after the kernel benchmark, on models generated
# here from scripts/make_bench_models.py (random weights, published architectures; nothing is downloaded):
# google/ddpm-cifar10-32 (fp16, batch 1, DDIM 50) and Stable Diffusion 1.5 (fp16, 512x512, batch 1, CFG 7.5,
# DDIM 50: UNet at batch 2 with 77 random text tokens, plus the VAE decode; then `diffrt profile` writes a Chrome
# trace of one UNet call and one decode into the logs). GPU_PASS_MODELS_S (default 170) seconds are kept free for them while the earlier steps run
# (0 skips them). The peer comparison (only with carried wheels) runs last, on what is left, and includes sd15
# with diffrt/peer ratios from the bench files.
#
# Usage:
#   scripts/gpu_pass.sh --stage     # on the BUILD machine (no GPU): copy what the bare GPU machine lacks
#                                   # (GoogleTest source, nlohmann_json, CLI11, libpng/zlib headers + libs)
#                                   # into third_party/ (ignored via .git/info/exclude; carry it).
#   scripts/gpu_pass.sh             # on the GPU machine, from the repository root.
# Environment:
#   OUT            results folder (default ./gpu_out). On the device tool only 8 files come back, so logs are
#                  packed into logs.tar.gz unless GPU_PASS_PACK=0.
#   GTEST_ROOT     GoogleTest source tree (default third_party/googletest); or GTest_DIR for an installed one.
#   DEPS_PREFIX    prefix holding include/, lib/, share/cmake/ of the staged deps (default third_party/gpu_deps).
#   CUDNN_ROOT     cuDNN root with include/ and lib/ (default: the pip package nvidia.cudnn, then the toolkit).
#   JOBS           build parallelism (default nproc).  SANITIZER_FILTER: gtest filter for compute-sanitizer.
#   GPU_PASS_MODELS_S  seconds reserved for the whole-model benchmarks (default 170; 0 = skip them).
#   GPU_PASS_MODELS    comma list of the whole-model benchmarks (default "cifar10,sd15"; add "dit" for DiT-XL/2 256 and
#                  512: diffrt bench at batch 1 with CFG 4 and batch 32 with CFG, bench_dit.json, and the diffusers
#                  peer in peer.json). A DiT session in one call:
#                    GPU_PASS_MODELS=dit GPU_PASS_TESTS='dit|attention|layer_norm|gemm' GPU_PASS_SANITIZER=0 \
#                      GPU_PASS_MODELS_S=300 scripts/gpu_pass.sh
#   GPU_PASS_TESTS     ctest -R regex for the GPU tests (default: all of them).
#   GPU_PASS_SANITIZER 0 skips compute-sanitizer.
# Results in $OUT (at most 8 files come back from the device tool): summary.md, ctest_gpu.xml, kernels.json,
# bench_cifar10.json, bench_sd15.json (schema diffrt.bench.v1), bench_dit.json (with dit: the four DiT runs'
# records {model, batch, dtype, step_ms_p50, ...} and their full bench documents), peer.json, logs.tar.gz.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

# ---- staging mode (build machine) ------------------------------------------------------------------------
if [[ "${1:-}" == "--stage" ]]; then
  set -e
  TP="$ROOT/third_party"
  mkdir -p "$TP/gpu_deps/include" "$TP/gpu_deps/lib" "$TP/gpu_deps/share/cmake"
  rm -rf "$TP/googletest"
  cp -r /usr/src/googletest "$TP/googletest"
  cp -r /usr/include/nlohmann "$TP/gpu_deps/include/"
  cp -r /usr/share/cmake/nlohmann_json "$TP/gpu_deps/share/cmake/"
  cp -r /usr/include/CLI "$TP/gpu_deps/include/"
  cp -r /usr/share/cmake/CLI11 "$TP/gpu_deps/share/cmake/"
  for h in png.h pngconf.h pnglibconf.h zlib.h zconf.h; do
    if [[ -f /usr/include/$h ]]; then cp "/usr/include/$h" "$TP/gpu_deps/include/"; fi
    if [[ -f /usr/include/libpng16/$h ]]; then mkdir -p "$TP/gpu_deps/include/libpng16"; cp "/usr/include/libpng16/$h" "$TP/gpu_deps/include/libpng16/"; fi
  done
  cp -P /usr/lib/x86_64-linux-gnu/libpng16.so* /usr/lib/x86_64-linux-gnu/libpng.so "$TP/gpu_deps/lib/" 2>/dev/null || true
  cp -P /usr/lib/x86_64-linux-gnu/libz.so* "$TP/gpu_deps/lib/" 2>/dev/null || true
  if [[ -d "$ROOT/.git" ]] && ! grep -qx '/third_party/' "$ROOT/.git/info/exclude" 2>/dev/null; then
    echo '/third_party/' >> "$ROOT/.git/info/exclude"
  fi
  du -sh "$TP"
  echo "staged into $TP; carry 'third_party' to the GPU machine"
  exit 0
fi

# ---- GPU pass -----------------------------------------------------------------------------------------------
START=$(date +%s)
BUDGET=${GPU_PASS_BUDGET_S:-540}
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS="$OUT/logs"
mkdir -p "$LOGS"
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
SUMMARY="$OUT/summary.md"
declare -a STEP_RESULTS=()

MODELS_S=${GPU_PASS_MODELS_S:-170}
PASS_MODELS=",${GPU_PASS_MODELS:-cifar10,sd15},"
TEST_FILTER=()
[[ -n "${GPU_PASS_TESTS:-}" ]] && TEST_FILTER=(-R "$GPU_PASS_TESTS")
RESERVE=$MODELS_S  # seconds later steps need; lowered to 0 when they start
left() { echo $((BUDGET - ($(date +%s) - START))); }
# run_step NAME TIMEOUT_S CMD... : runs with a timeout (capped by the budget left minus RESERVE), logs to
# $LOGS/NAME.log.
run_step() {
  local name=$1 limit=$2
  shift 2
  local remaining
  remaining=$(($(left) - RESERVE))
  if ((remaining < 15)); then
    STEP_RESULTS+=("| $name | skipped (budget) | 0 |")
    return 0
  fi
  ((limit > remaining - 10)) && limit=$((remaining - 10))
  local t0 rc
  t0=$(date +%s)
  echo "== $name (timeout ${limit}s): $*" | tee -a "$LOGS/steps.log"
  timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  local verdict="ok"
  ((rc == 124 || rc == 137)) && verdict="TIMEOUT"
  ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED (rc $rc)"
  STEP_RESULTS+=("| $name | $verdict | $(($(date +%s) - t0)) |")
  echo "   -> $verdict" | tee -a "$LOGS/steps.log"
  return 0
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: $0 $*"
  echo "git: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?') $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files"
  nvidia-smi 2>&1 || echo "nvidia-smi unavailable"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
  nvcc --version 2>&1 || echo "nvcc unavailable"
  cmake --version 2>&1 | head -1
} >"$LOGS/environment.log" 2>&1

# ---- dependencies ------------------------------------------------------------------------------------------
DEPS_PREFIX=${DEPS_PREFIX:-$ROOT/third_party/gpu_deps}
GTEST_ROOT=${GTEST_ROOT:-$ROOT/third_party/googletest}
PREFIX_PATH=""
[[ -d "$DEPS_PREFIX" ]] && PREFIX_PATH="$DEPS_PREFIX"
if [[ -z "${GTest_DIR:-}" ]]; then
  GTEST_PREFIX="$BUILD/_gtest_install"
  if [[ ! -f "$GTEST_PREFIX/lib/cmake/GTest/GTestConfig.cmake" ]]; then
    if [[ -d "$GTEST_ROOT" ]]; then
      run_step gtest_build 180 bash -c "cmake -S '$GTEST_ROOT' -B '$BUILD/_gtest' -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX='$GTEST_PREFIX' -DBUILD_GMOCK=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON && \
        cmake --build '$BUILD/_gtest' -j '$JOBS' && cmake --install '$BUILD/_gtest'"
    else
      echo "no GoogleTest: set GTEST_ROOT or GTest_DIR, or run '$0 --stage' on the build machine" >>"$LOGS/steps.log"
    fi
  fi
  PREFIX_PATH="${PREFIX_PATH:+$PREFIX_PATH;}$GTEST_PREFIX"
fi

if [[ -z "${CUDNN_ROOT:-}" ]]; then
  CUDNN_ROOT=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
fi
CMAKE_EXTRA=()
INC_FLAGS=""
if [[ -n "${CUDNN_ROOT:-}" && -d "$CUDNN_ROOT/include" ]]; then
  INC_FLAGS="-isystem $CUDNN_ROOT/include"
  CUDNN_SO=""
  for cand in "$CUDNN_ROOT"/lib/libcudnn.so "$CUDNN_ROOT"/lib/libcudnn.so.[0-9]*; do
    if [[ -e "$cand" ]]; then CUDNN_SO=$cand; break; fi
  done
  [[ -n "$CUDNN_SO" ]] && CMAKE_EXTRA+=("-DCUDNN_LIB=$CUDNN_SO")
  export LD_LIBRARY_PATH="$CUDNN_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [[ -d "$DEPS_PREFIX/lib" ]]; then
  export LD_LIBRARY_PATH="$DEPS_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  CMAKE_EXTRA+=("-DPNG_PNG_INCLUDE_DIR=$DEPS_PREFIX/include" "-DZLIB_INCLUDE_DIR=$DEPS_PREFIX/include")
  if [[ -e "$DEPS_PREFIX/lib/libpng16.so" ]]; then
    CMAKE_EXTRA+=("-DPNG_LIBRARY=$DEPS_PREFIX/lib/libpng16.so" "-DPNG_LIBRARY_RELEASE=$DEPS_PREFIX/lib/libpng16.so")
  fi
  if [[ -e "$DEPS_PREFIX/lib/libz.so" ]]; then
    CMAKE_EXTRA+=("-DZLIB_LIBRARY=$DEPS_PREFIX/lib/libz.so" "-DZLIB_LIBRARY_RELEASE=$DEPS_PREFIX/lib/libz.so")
  fi
fi
[[ -n "${GTest_DIR:-}" ]] && CMAKE_EXTRA+=("-DGTest_DIR=$GTest_DIR")
echo "CUDNN_ROOT=${CUDNN_ROOT:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$LOGS/environment.log"

# ---- build (sm_90 only) --------------------------------------------------------------------------------------
run_step configure 90 cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDIFFRT_CUDA_ARCH=90 -DDIFFRT_CUDA=ON -DDIFFRT_TESTS=ON -DDIFFRT_TRITON=OFF \
  "-DCMAKE_PREFIX_PATH=$PREFIX_PATH" "-DCMAKE_CXX_FLAGS=$INC_FLAGS" "-DCMAKE_CUDA_FLAGS=$INC_FLAGS" "${CMAKE_EXTRA[@]}"
run_step build 300 cmake --build "$BUILD" -j "$JOBS"

# ---- tests ------------------------------------------------------------------------------------------------------
run_step ctest_gpu 200 ctest --test-dir "$BUILD" -L gpu "${TEST_FILTER[@]}" --output-on-failure --timeout 150 -j 1 \
  --output-junit "$OUT/ctest_gpu.xml"

# ---- compute-sanitizer on the kernel tests (reduced filters) -----------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
FILTER=${SANITIZER_FILTER:--*Larger*:*RealModel*:*Many*:*Random*}
if [[ "${GPU_PASS_SANITIZER:-1}" == "0" ]]; then
  STEP_RESULTS+=("| compute-sanitizer | skipped (GPU_PASS_SANITIZER=0) | 0 |")
elif [[ -n "$SAN" ]]; then
  for t in "$BUILD"/tests/gpu_*_test; do
    [[ -x "$t" ]] || continue
    name=$(basename "$t")
    [[ "$name" == gpu_executor_test ]] && continue  # whole models: too slow under the sanitizer
    run_step "memcheck_$name" 45 "$SAN" --tool memcheck --error-exitcode 3 --leak-check full "$t" "--gtest_filter=$FILTER"
  done
  for name in gpu_group_norm_test gpu_layer_norm_test gpu_attention_test gpu_scheduler_step_test gpu_timestep_embedding_test \
              gpu_block_sum_test gpu_dit_test; do
    t="$BUILD/tests/$name"
    [[ -x "$t" ]] || continue
    run_step "racecheck_$name" 40 "$SAN" --tool racecheck --error-exitcode 3 "$t" "--gtest_filter=$FILTER"
  done
  # block_sum's shuffles and barriers in partial warps (kernels/common/cuda_types.cuh).
  [[ -x "$BUILD/tests/gpu_block_sum_test" ]] &&
    run_step "synccheck_gpu_block_sum_test" 30 "$SAN" --tool synccheck --error-exitcode 3 "$BUILD/tests/gpu_block_sum_test"
else
  STEP_RESULTS+=("| compute-sanitizer | not found | 0 |")
fi

# ---- benchmarks and peer comparison -------------------------------------------------------------------------
if [[ -x "$BUILD/bench/diffrt_kernel_bench" ]]; then
  kb=$(($(left) - RESERVE - 15)); ((kb > 75)) && kb=75
  run_step bench_kernels 90 "$BUILD/bench/diffrt_kernel_bench" --quick --budget-s "$((kb > 10 ? kb : 10))" \
    --json "$OUT/kernels.json"
fi

# ---- whole-model benchmarks: diffrt bench (+ trace) on generated models -------------------------------------
RESERVE=0
MODELS_DIR="$BUILD/bench_models"
DIFFRT="$BUILD/diffrt"
export DIFFRT_GIT_SHA=${DIFFRT_GIT_SHA:-$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
declare -a BENCH_FILES=()
if ((MODELS_S > 0)) && [[ -x "$DIFFRT" ]] && [[ "$PASS_MODELS" == *,cifar10,* ]]; then
  # cifar10-32 (~20 s): 143 MB of fp32 safetensors, converted to fp16.
  run_step cifar_model 40 python3 "$ROOT/scripts/make_bench_models.py" "$MODELS_DIR" --models cifar10-32
  run_step cifar_convert 30 "$DIFFRT" convert "$MODELS_DIR/ddpm-cifar10-32" -o "$BUILD/cifar10.drt" --dtype fp16 -q
  if [[ -f "$BUILD/cifar10.drt" ]]; then
    run_step bench_cifar10 45 "$DIFFRT" bench -m "$BUILD/cifar10.drt" --device cuda -b 1 --sampler ddim --steps 50 \
      --warmup 20 --repeat 200 --name ddpm-cifar10-32 --json "$OUT/bench_cifar10.json" --trace "$LOGS/trace_cifar10.json"
    BENCH_FILES+=("$OUT/bench_cifar10.json")
  fi
fi
if ((MODELS_S > 0)) && [[ -x "$DIFFRT" ]] && [[ "$PASS_MODELS" == *,sd15,* ]]; then
  # Stable Diffusion 1.5 (~120-150 s): 1.76 GiB of fp16 safetensors written by numpy, converted to fp16 (the VAE is
  # fp16 too: a random-weight decode may overflow, which the JSON reports as vae_finite; timings stay valid).
  run_step sd15_model 60 python3 "$ROOT/scripts/make_bench_models.py" "$MODELS_DIR" --models sd15 --sd-dtype fp16
  run_step sd15_convert 60 "$DIFFRT" convert "$MODELS_DIR/sd15" -o "$BUILD/sd15.drt" --dtype fp16 -q
  rm -rf "$MODELS_DIR/sd15"  # 1.8 GB we no longer need
  if [[ -f "$BUILD/sd15.drt" ]]; then
    SD_ARGS=(-m "$BUILD/sd15.drt" --device cuda -b 1 -H 512 -W 512 --guidance-scale 7.5 --sampler ddim --steps 50
             --context-len 77)
    run_step bench_sd15 120 "$DIFFRT" bench "${SD_ARGS[@]}" --warmup 5 --repeat 50 --vae-repeat 10 --name sd15 \
      --json "$OUT/bench_sd15.json"
    BENCH_FILES+=("$OUT/bench_sd15.json")
    # The sampler most users run: DPM++ 2M Karras at 20 steps against DDIM 50 above (whole-run latency).
    run_step bench_sd15_dpmpp 90 "$DIFFRT" bench -m "$BUILD/sd15.drt" --device cuda -b 1 -H 512 -W 512 \
      --guidance-scale 7.5 --context-len 77 --no-eager --no-unet --sampler dpmpp-2m --karras --steps 20 --warmup 3 --repeat 20 --vae-repeat 1 --name sd15_dpmpp2m_karras20 \
      --json "$OUT/bench_sd15_dpmpp.json"
    BENCH_FILES+=("$OUT/bench_sd15_dpmpp.json")
    # A separate process, so a slow profile cannot cost the bench its JSON: per-node trace of one UNet call
    # (batch 2) and one VAE decode, with the copy/GEMM ceilings.
    run_step profile_sd15 90 "$DIFFRT" profile "${SD_ARGS[@]}" --warmup 2 --repeat 5 --name sd15 \
      -o "$LOGS/trace_sd15.json" --json "$LOGS/profile_sd15.json"
  fi
fi
if ((MODELS_S > 0)) && [[ -x "$DIFFRT" ]] && [[ "$PASS_MODELS" == *,dit,* ]]; then
  # DiT-XL/2 (facebook/DiT-XL-2-256 / -512 architectures, random weights; ~45 s: 1.5 GB of fp16 safetensors written
  # once, the 512 folder hard-links them), converted to fp16 (the converter stores one of the 28 identical embedder
  # copies: 675 M transformer parameters + the SD VAE decoder). DiTPipeline's workload: DDIM 50 steps, guidance 4
  # (the transformer runs [cond; uncond] at 2B), at batch 1 and batch 32; the 256 model also gets a profile trace.
  run_step dit_models 120 python3 "$ROOT/scripts/make_bench_models.py" "$MODELS_DIR" --models dit-xl2-256,dit-xl2-512 \
    --dit-dtype fp16
  for res in 256 512; do
    run_step "dit${res}_convert" 60 "$DIFFRT" convert "$MODELS_DIR/dit-xl2-$res" -o "$BUILD/dit$res.drt" --dtype fp16 -q
  done
  rm -rf "$MODELS_DIR/dit-xl2-256" "$MODELS_DIR/dit-xl2-512"
  DIT_JSONS=()
  for res in 256 512; do
    [[ -f "$BUILD/dit$res.drt" ]] || continue
    for b in 1 32; do
      reps=50; ((b == 32)) && reps=15; ((b == 32 && res == 512)) && reps=6
      run_step "bench_dit${res}_b$b" 120 "$DIFFRT" bench -m "$BUILD/dit$res.drt" --device cuda -b "$b" \
        --guidance-scale 4 --sampler ddim --steps 50 --warmup 3 --repeat "$reps" --vae-repeat 3 \
        --name "dit-xl2-$res" --json "$LOGS/bench_dit${res}_b$b.json"
      [[ -f "$LOGS/bench_dit${res}_b$b.json" ]] && DIT_JSONS+=("$LOGS/bench_dit${res}_b$b.json")
    done
  done
  if [[ -f "$BUILD/dit256.drt" ]]; then
    run_step profile_dit256 90 "$DIFFRT" profile -m "$BUILD/dit256.drt" --device cuda -b 1 --guidance-scale 4 \
      --sampler ddim --steps 50 --warmup 2 --repeat 5 --name dit-xl2-256 -o "$LOGS/trace_dit256.json" \
      --json "$LOGS/profile_dit256.json"
  fi
  if ((${#DIT_JSONS[@]})); then  # one file for the device tool's 8-file limit; peer_compare reads its records
    python3 - "$OUT/bench_dit.json" "${DIT_JSONS[@]}" <<'PYEOF' >>"$LOGS/steps.log" 2>&1
import json, sys
runs = [json.load(open(p)) for p in sys.argv[2:]]
recs = []
for d in runs:
    step = (d.get("results") or {}).get("step") or {}
    vae = (d.get("results") or {}).get("vae_decode") or {}
    if step.get("p50_ms") is None:
        continue
    r = {"model": d["name"], "batch": int(d["workload"]["batch"]), "dtype": d["model"]["dtype"],
         "step_ms_p50": step["p50_ms"], "device": d["env"].get("device")}
    if vae.get("p50_ms") is not None:
        r["vae_decode_ms_p50"] = vae["p50_ms"]
    recs.append(r)
json.dump({"schema": "diffrt.bench.v1.collection", "results": recs, "runs": runs}, open(sys.argv[1], "w"), indent=1)
print("wrote", sys.argv[1], len(recs), "records")
PYEOF
    BENCH_FILES+=("$OUT/bench_dit.json")
  fi
fi
if ((MODELS_S <= 0)) || [[ ! -x "$DIFFRT" ]]; then
  STEP_RESULTS+=("| whole-model benchmarks | skipped (GPU_PASS_MODELS_S=0 or no diffrt binary) | 0 |")
fi

# ---- peer comparison (diffusers wheels carried from the build machine: scripts/vendor_wheels.sh) ---------------
if [[ -d "$ROOT/.whl" ]]; then
  DJ=()
  for f in "${BENCH_FILES[@]}"; do [[ -f "$f" ]] && DJ+=(--diffrt-json "$f"); done
  pb=$(($(left) - 30)); ((pb > 240)) && pb=240
  PEER_MODELS=""
  [[ "$PASS_MODELS" == *,cifar10,* ]] && PEER_MODELS+=",cifar10-32,celebahq-256"
  [[ "$PASS_MODELS" == *,sd15,* ]] && PEER_MODELS+=",sd15"
  [[ "$PASS_MODELS" == *,dit,* ]] && PEER_MODELS+=",dit-xl2-256,dit-xl2-512"
  run_step peer_compare 260 python3 "$ROOT/scripts/peer_compare.py" --wheels "$ROOT/.whl" --budget-s "$((pb > 10 ? pb : 10))" \
    --models "${PEER_MODELS#,}" --dit-batches 1,32 --models-dir "$MODELS_DIR" --json "$OUT/peer.json" "${DJ[@]}"
else
  STEP_RESULTS+=("| peer_compare | skipped (no .whl: run scripts/vendor_wheels.sh and carry .whl) | 0 |")
fi

# ---- summary ------------------------------------------------------------------------------------------------
{
  echo "# diffrt GPU pass"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`$0 $*\` (OUT=$OUT, BUILD=$BUILD)"
  echo "- git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo "- CUDA: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
  echo "- cuDNN: ${CUDNN_ROOT:-toolkit}"
  echo "- wall time: $(($(date +%s) - START)) s of budget $BUDGET s"
  echo
  echo "| step | result | seconds |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${STEP_RESULTS[@]}"
  echo
  echo "## ctest -L gpu (tail)"
  echo '```'
  tail -n 40 "$LOGS/ctest_gpu.log" 2>/dev/null
  echo '```'
  echo
  echo "## sanitizer verdicts"
  echo '```'
  grep -H -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$LOGS"/memcheck_*.log "$LOGS"/racecheck_*.log "$LOGS"/synccheck_*.log 2>/dev/null
  echo '```'
  echo
  echo "## numbers printed by the tests"
  echo '```'
  grep -h -E "^\[(cuda|parity|pipeline)" "$LOGS/ctest_gpu.log" 2>/dev/null | head -n 80
  echo '```'
  echo
  echo "## whole-model benchmarks (diffrt bench)"
  echo '```'
  for f in "$OUT"/bench_*.json; do
    [[ -f "$f" ]] || continue
    python3 - "$f" <<'PYEOF' 2>&1
import json, sys
top = json.load(open(sys.argv[1]))
for d in (top["runs"] if top.get("schema") == "diffrt.bench.v1.collection" else [top]):
  w, r, x, m = d["workload"], d["results"], d["derived"], d["memory"]
  p = lambda t: f"{t['p50_ms']:.3f}" if t else "-"
  line = (f"{d['name']} {w['width']}x{w['height']} b{w['batch']} {d['model']['dtype']} "
          f"{'CFG ' + format(w['guidance_scale'], 'g') if w['cfg'] else 'no CFG'} {w['sampler']} {w['steps']}: "
          f"step {p(r['step'])} ms p50 (graph {'yes' if r['graph_used'] else 'NO: ' + r['graph_fallback']}), "
          f"eager {p(r['step_eager'])}, UNet eager/graph {p(r['unet'])}/{p(r['unet_graph'])}, VAE {p(r['vae_decode'])} ms"
          f"{'' if r['vae_finite'] else ' (non-finite output)'}, {x['step_tflops'] or 0:.1f} TFLOP/s, "
          f"peak {(m['peak_device_bytes'] or 0) / 2**30:.2f} GiB")
  if d["name"] == "sd15" and r["step"]:
      line += f"; targets: <= 5 ms/step {'met' if r['step']['p50_ms'] <= 5 else 'NOT met'}"
      if r["vae_decode"]:
          line += f", VAE <= 15 ms {'met' if r['vae_decode']['p50_ms'] <= 15 else 'NOT met'}"
  print(line)
PYEOF
  done
  grep -h -A12 "^| model | batch | dtype | peer |" "$LOGS/peer_compare.log" 2>/dev/null
  echo '```'
  echo
  echo "## build errors (if any)"
  echo '```'
  grep -E "error|FAILED" "$LOGS/build.log" 2>/dev/null | head -n 30
  echo '```'
  echo
  echo "nvidia-smi:"
  echo '```'
  cat "$LOGS/environment.log"
  echo '```'
} >"$SUMMARY"

if [[ "${GPU_PASS_PACK:-1}" == "1" ]]; then
  tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOGS"
fi
echo "GPU pass done in $(($(date +%s) - START)) s; summary: $SUMMARY"
head -n 40 "$SUMMARY"
