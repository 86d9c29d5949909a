#!/usr/bin/env bash
# Streaming GPTQ benchmark (issue 11): MXFP4 GPTQ with 16 calibration windows of 256 tokens on the
# synthetic Llama-2-7B-shaped checkpoint of stream_checkpoint.sh. Records wall time and peak RSS
# (/usr/bin/time), the per-layer split the CLI prints (forward, Hessian, solve), the 128-window
# extrapolation from that split, then kills a second run in a random layer (SIGKILL), resumes it
# and compares every output file's sha256 with the uninterrupted run's.
#   cmake -S . -B build -DMXQ_BUILD_BENCHMARKS=ON && cmake --build build -j2 --target mxq_cli mxq_synth_checkpoint
#   bash benchmarks/stream_gptq.sh [WORK (/tmp/mxq-stream)] [KILL_LAYER (random)]
# Steps can be skipped: SKIP_TIMED=1 (reuse WORK/q-gptq), SKIP_RESUME=1.
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${1:-/tmp/mxq-stream}
KILL=${2:-$((RANDOM % 30 + 1))}
CALIB=${CALIB:-examples/data/code/code-calib-128x256.u16}
mkdir -p "$WORK"
if [ ! -f "$WORK/llama7b/model.safetensors.index.json" ]; then
  /usr/bin/time -f "generate: %e s, peak RSS %M KB" "$BUILD/benchmarks/mxq_synth_checkpoint" --out "$WORK/llama7b"
fi
drop_caches() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
args=(quantize-model --model "$WORK/llama7b" --format mxfp4 --method gptq --calib "$CALIB" --calib-windows 16 --threads 2)

if [ -z "${SKIP_TIMED:-}" ]; then
  rm -rf "$WORK/q-gptq"
  drop_caches
  /usr/bin/time -o "$WORK/gptq.time" -f "%e %U %S %M" "$BUILD/mxq" "${args[@]}" --out "$WORK/q-gptq" \
    > "$WORK/gptq.out" 2> "$WORK/gptq.log"
fi
read -r t u s m < "$WORK/gptq.time"
grep -E "memory estimate" "$WORK/gptq.log" || true
awk -v t="$t" -v u="$u" -v s="$s" -v m="$m" 'BEGIN { printf "gptq 16 windows: wall %.0f s (%.1f min), user %.0f s, sys %.0f s, peak RSS %.2f GiB\n", t, t / 60, u, s, m / 1048576 }'
# Per-layer split: "layer i/n done: scale Xs forward Xs hessian Xs solve Xs".
awk '/ done: / {
       for (i = 1; i <= NF; ++i) {
         if ($i == "forward") f += $(i + 1); if ($i == "hessian") h += $(i + 1); if ($i == "solve") v += $(i + 1)
       }
       n++
     }
     END {
       if (n == 0) { print "no per-layer lines"; exit 1 }
       printf "per layer (mean of %d): forward %.1f s, hessian %.1f s, solve %.1f s\n", n, f / n, h / n, v / n
       # forward and Hessian grow with the tokens (x8 for 128 windows), the solve does not.
       printf "128 windows, extrapolated: forward %.0f s + hessian %.0f s + solve %.0f s = %.1f min\n", 8 * f, 8 * h, v, (8 * f + 8 * h + v) / 60
     }' "$WORK/gptq.log"

if [ -z "${SKIP_RESUME:-}" ]; then
  rm -rf "$WORK/q-gptq-resumed"
  echo "killing a second run in layer $KILL, then resuming it"
  set +e
  MXQ_TEST_KILL_IN_LAYER=$KILL "$BUILD/mxq" "${args[@]}" --out "$WORK/q-gptq-resumed" > /dev/null 2> "$WORK/gptq-killed.log"
  echo "killed run: exit status $?"
  set -e
  "$BUILD/mxq" "${args[@]}" --out "$WORK/q-gptq-resumed" > "$WORK/gptq-resumed.out" 2> "$WORK/gptq-resumed.log"
  grep "resuming after" "$WORK/gptq-resumed.log"
  (cd "$WORK/q-gptq" && sha256sum ./* | sort -k2) > "$WORK/full.sha256"
  (cd "$WORK/q-gptq-resumed" && sha256sum ./* | sort -k2) > "$WORK/resumed.sha256"
  cat "$WORK/full.sha256"
  if cmp -s "$WORK/full.sha256" "$WORK/resumed.sha256"; then echo "resumed checkpoint: identical (every file)"; else
    echo "resumed checkpoint DIFFERS"; diff "$WORK/full.sha256" "$WORK/resumed.sha256"; exit 1; fi
fi
