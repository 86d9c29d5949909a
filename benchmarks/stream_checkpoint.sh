#!/usr/bin/env bash
# Streaming benchmark (issue 11): a synthetic Llama-2-7B-shaped bf16 checkpoint (13.5 GB, two
# shards like the Hub's), read once cold, then `mxq quantize-model` on it, with wall time and peak
# RSS per run (/usr/bin/time). Needs ~20 GB of free disk in WORK and a build with the benchmarks:
#   cmake -S . -B build -DMXQ_BUILD_BENCHMARKS=ON && cmake --build build -j2 --target mxq_cli mxq_synth_checkpoint
#   bash benchmarks/stream_checkpoint.sh [WORK (/tmp/mxq-stream)] [extra quantize-model args]
# PAIRS=k rounds (3); COMPARE_MAP=1 adds, per round, the run with direct I/O off (MXQ_DIRECT_IO=0).
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${1:-/tmp/mxq-stream}
shift || true
mkdir -p "$WORK"
if [ ! -f "$WORK/llama7b/model.safetensors.index.json" ]; then
  /usr/bin/time -f "generate: %e s, peak RSS %M KB" "$BUILD/benchmarks/mxq_synth_checkpoint" --out "$WORK/llama7b"
fi
drop_caches() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; else echo "(page cache not dropped: not root)"; fi; }
secs() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
# The disk of a shared VM is noisy (one cold read of this checkpoint took 6.3 s to 20 s here), so
# the baselines and the run alternate, page cache dropped before each, PAIRS times; every ratio
# is against the baselines of its own round.
PAIRS=${PAIRS:-3}
out_mb=4000
echo "round  read-once  write-output  rtn-wall  user  sys  peak-RSS  rtn/read  rtn/(read+write)"
for r in $(seq 1 "$PAIRS"); do
  drop_caches
  t_read=$(secs cat "$WORK"/llama7b/*.safetensors)
  drop_caches
  # Writing the output's size once and flushing it (what the run must write, durably).
  t_write=$(secs dd if=/dev/zero of="$WORK/write-once.bin" bs=8M count=$((out_mb / 8)) conv=fdatasync status=none)
  rm -f "$WORK/write-once.bin"
  drop_caches
  rm -rf "$WORK/q-rtn"
  /usr/bin/time -o "$WORK/rtn.time" -f "%e %U %S %M" \
    "$BUILD/mxq" quantize-model --model "$WORK/llama7b" --format mxfp4 --method rtn --out "$WORK/q-rtn" --threads 2 "$@" \
    > "$WORK/rtn.out" 2> "$WORK/rtn.log"
  read -r t_rtn u s m < "$WORK/rtn.time"
  out_mb=$(( $(du -sm "$WORK/q-rtn" | cut -f1) ))
  awk -v r="$r" -v a="$t_read" -v w="$t_write" -v t="$t_rtn" -v u="$u" -v s="$s" -v m="$m" \
    'BEGIN { printf "%5d  %8.2fs  %11.2fs  %7.2fs  %4.1f  %4.1f  %5.2f GiB  %7.2f  %7.2f\n", r, a, w, t, u, s, m / 1048576, t / a, t / (a + w) }'
  if [ "${COMPARE_MAP:-0}" = 1 ]; then
    # The same run reading the layers through the memory map instead of direct I/O (MXQ_DIRECT_IO=0).
    drop_caches
    rm -rf "$WORK/q-map"
    MXQ_DIRECT_IO=0 /usr/bin/time -o "$WORK/map.time" -f "%e %U %S %M" \
      "$BUILD/mxq" quantize-model --model "$WORK/llama7b" --format mxfp4 --method rtn --out "$WORK/q-map" --threads 2 "$@" \
      > "$WORK/map.out" 2> "$WORK/map.log"
    read -r t_map u s m < "$WORK/map.time"
    cmp -s "$WORK/q-rtn/model.safetensors" "$WORK/q-map/model.safetensors" || { echo "direct and map runs differ" >&2; exit 1; }
    awk -v a="$t_read" -v t="$t_map" -v u="$u" -v s="$s" -v m="$m" \
      'BEGIN { printf "  map  %8s   %11s   %7.2fs  %4.1f  %4.1f  %5.2f GiB  %7.2f   (MXQ_DIRECT_IO=0, same output)\n", "", "", t, u, s, m / 1048576, t / a }'
    rm -rf "$WORK/q-map"
  fi
done
tail -3 "$WORK/rtn.out"
sha256sum "$WORK"/q-rtn/*.safetensors
ls -l "$WORK/q-rtn"
