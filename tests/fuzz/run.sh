#!/usr/bin/env bash
# Runs every harness of a -DMXQ_FUZZ=ON build on its committed corpus for SECONDS each, with a fixed
# seed (what CI does), and prints each one's final stats (executions, coverage). Exits non-zero on
# the first finding (crash, leak, sanitizer report, uncaught exception, timeout); the input that
# caused it is kept under WORK/<harness>/ for `<harness> <file>` to reproduce it.
# JOBS harnesses run at once (default: the number of cores), each single-threaded, so CI's two
# cores fuzz two parsers at a time without shortening any harness's time.
#   bash tests/fuzz/run.sh BUILD_DIR [SECONDS (60)] [WORK (BUILD_DIR/fuzz-work)]
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [SECONDS] [WORK]}
secs=${2:-60}
work=${3:-$build/fuzz-work}
# Absolute paths: each harness runs from inside its work directory.
build=$(cd "$build" && pwd)
mkdir -p "$work"
work=$(cd "$work" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
jobs=${JOBS:-$(nproc 2>/dev/null || echo 1)}
run_one() {  # one harness; its verdict in WORK/<harness>/verdict
  local h=$1 bin dict
  bin=$(find "$build" -name "$h" -type f -perm -u+x | head -1)
  [ -n "$bin" ] || { echo "run.sh: no $h under $build (configure with -DMXQ_FUZZ=ON)" > "$work/$h.missing"; return 0; }
  dict=$here/json.dict
  [ "$h" = fuzz_npy ] && dict=$here/npy.dict
  mkdir -p "$work/$h/new"
  # New inputs go to a scratch directory; the committed corpus is only read.
  if (cd "$work/$h" && "$bin" -seed=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -dict="$dict" -print_final_stats=1 -print_pcs=0 new "$here/corpus/$h" > log.txt 2>&1); then
    echo ok > "$work/$h/verdict"
  else
    echo fail > "$work/$h/verdict"
  fi
}
harnesses="fuzz_safetensors fuzz_index fuzz_config fuzz_tokenizer fuzz_npy fuzz_packed"
running=0
for h in $harnesses; do
  rm -f "$work/$h.missing" "$work/$h/verdict"
  echo "== $h (${secs} s, seed 1)"
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
status=0
for h in $harnesses; do
  if [ -f "$work/$h.missing" ]; then cat "$work/$h.missing" >&2; exit 2; fi
  echo "== $h"
  if [ "$(cat "$work/$h/verdict" 2>/dev/null)" != ok ]; then
    echo "run.sh: $h found a problem (input kept in $work/$h):" >&2
    # The sanitizer's report where there is one, else the end of the log (a harness that did not start).
    grep -E "ERROR|SUMMARY|==[0-9]+==|terminate|Test unit written" "$work/$h/log.txt" | head -20 >&2 \
      || tail -20 "$work/$h/log.txt" >&2
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov: [0-9]+ ft: [0-9]+" "$work/$h/log.txt" | grep -E "DONE|stat::" | tail -3 || true
done
exit $status
