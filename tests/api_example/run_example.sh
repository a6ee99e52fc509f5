#!/usr/bin/env bash
# ctest driver for tests/api_example/example.c: converts the tiny class-conditional fixture and the
# tiny Stable-Diffusion-style pipeline with the diffrt CLI, runs the C example on both and checks its
# output (4 images, values in [0, 1], a valid PGM / PPM) and that bad input fails with a message.
#   run_example.sh EXAMPLE_BINARY   (env: DIFFRT_BINARY, DIFFRT_SOURCE_DIR)
set -euo pipefail
EX=${1:?example binary}; BIN=${DIFFRT_BINARY:?}; SRC=${DIFFRT_SOURCE_DIR:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

"$BIN" convert "$SRC/tests/fixtures/models/class_cond" -o "$T/cc.drt" -q
"$EX" "$T/cc.drt" 3 "$T/out.pgm" > "$T/log" 2> "$T/err"
cat "$T/log"
[ "$(grep -c '^image [0-3] (class 3): mean 0\.' "$T/log")" = 4 ] || { echo "expected 4 image lines"; exit 1; }
head -c 2 "$T/out.pgm" | grep -q P5 || { echo "not a PGM"; exit 1; }
[ "$(stat -c %s "$T/out.pgm")" -eq $((13 + 64 * 16)) ] || { echo "PGM has the wrong size"; exit 1; }

# Failures are reported with diffrt_last_error and exit status 1.
if "$EX" "$T/missing.drt" 2> "$T/err2"; then echo "expected failure"; exit 1; fi
grep -q "DIFFRT_E_IO" "$T/err2" && grep -q "missing.drt" "$T/err2" || { cat "$T/err2"; exit 1; }
if "$EX" "$T/cc.drt" 11 2> "$T/err3"; then echo "expected failure for class 11"; exit 1; fi
grep -q "out of range" "$T/err3" || { cat "$T/err3"; exit 1; }

# Text-conditioned latent model: prompt embeddings + guidance, decoded by the VAE to 16x16 RGB.
"$BIN" convert "$SRC/tests/fixtures/sd/sd1_tiny/pipeline" -o "$T/sd.drt" -q
"$EX" "$T/sd.drt" 0 "$T/sd.ppm" > "$T/log4" 2> "$T/err4" || { cat "$T/log4" "$T/err4"; exit 1; }
cat "$T/log4"
grep -q "text-conditioned (context_dim 32)" "$T/log4" || { echo "expected the text model line"; exit 1; }
[ "$(grep -c '^image [0-3] (prompt): mean 0\.' "$T/log4")" = 4 ] || { echo "expected 4 image lines"; exit 1; }
head -c 2 "$T/sd.ppm" | grep -q P6 || { echo "not a PPM"; exit 1; }
[ "$(stat -c %s "$T/sd.ppm")" -eq $((13 + 64 * 16 * 3)) ] || { echo "PPM has the wrong size"; exit 1; }
echo "api example OK"
