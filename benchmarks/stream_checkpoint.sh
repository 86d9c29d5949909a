#!/usr/bin/env bash
# Streaming benchmark (issue 11): a synthetic Llama-2-7B-shaped bf16 checkpoint (13.5 GB, two
# shards like the Hub's), read once cold, then `mxq quantize-model` on it, with wall time and peak
# RSS per run (/usr/bin/time). Needs ~20 GB of free disk in WORK and a build with the benchmarks:
#   cmake -S . -B build -DMXQ_BUILD_BENCHMARKS=ON && cmake --build build -j2 --target mxq_cli mxq_synth_checkpoint
#   bash benchmarks/stream_checkpoint.sh [WORK (/tmp/mxq-stream)] [extra quantize-model args]
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${1:-/tmp/mxq-stream}
shift || true
mkdir -p "$WORK"
if [ ! -f "$WORK/llama7b/model.safetensors.index.json" ]; then
  /usr/bin/time -f "generate: %e s, peak RSS %M KB" "$BUILD/mxq_synth_checkpoint" --out "$WORK/llama7b"
fi
drop_caches() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; else echo "(page cache not dropped: not root)"; fi; }
drop_caches
/usr/bin/time -f "read once (cold): %e s" cat "$WORK"/llama7b/*.safetensors > /dev/null
drop_caches
rm -rf "$WORK/q-rtn"
/usr/bin/time -f "mxfp4 rtn (cold): %e s wall, %U s user, %S s sys, peak RSS %M KB" \
  "$BUILD/mxq" quantize-model --model "$WORK/llama7b" --format mxfp4 --method rtn --out "$WORK/q-rtn" --threads 2 "$@" \
  2> "$WORK/rtn.log" | tail -4
tail -1 "$WORK/rtn.log"
ls -l "$WORK/q-rtn"
