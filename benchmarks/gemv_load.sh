#!/usr/bin/env bash
# Batch-1 MXFP4 GEMV on 2 threads, quiet and with a busy neighbour (a shell busy loop pinned to
# CPU 1), mxq (packed matrix and its 8-row interleaved copy) next to llama.cpp's repacked MXFP4
# path (../shared/bench), same shapes, same run,
# alternating ROUNDS times (issue 15, "under load"). Both programs time each call on its own
# (20 warm-up calls, then 300) and report the median, mxq also the mean (mxq_gemv_calls); the
# script prints the median over rounds of each and the loaded / quiet ratios. GBENCH=1 adds
# mxq_bench's Google Benchmark GEMV (a mean over back-to-back calls) to the same rounds, and
# EXTRA=path another mxq_bench build (say one from before a change).
#   cmake -S . -B build -DMXQ_BUILD_BENCHMARKS=ON && cmake --build build -j2 --target mxq_gemv_calls mxq_bench
#   cmake -S ../shared/bench -B /tmp/ggml-bench -DLLAMA_DIR=$(realpath ../shared/llama.cpp) -DCMAKE_BUILD_TYPE=Release
#   cmake --build /tmp/ggml-bench -j2 --target ggml_mxfp4_bench
#   bash benchmarks/gemv_load.sh [BUILD (build)] [GGML_BENCH (/tmp/ggml-bench/ggml_mxfp4_bench)] [ROUNDS (3)]
set -euo pipefail
build=${1:-build}
ggml=${2:-/tmp/ggml-bench/ggml_mxfp4_bench}
rounds=${3:-3}
[ -x "$ggml" ] || { echo "gemv_load.sh: no ggml bench at $ggml (see the build lines above)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "gemv_load.sh: needs 2 CPUs" >&2; exit 1; }
progs=()
[ "${GBENCH:-0}" = 1 ] && progs+=("mxq_bench=$build/benchmarks/mxq_bench")
[ -n "${EXTRA:-}" ] && progs+=("extra=$EXTRA")
tmp=$(mktemp -d)
busy=
stop_busy() { if [ -n "$busy" ]; then kill "$busy" 2> /dev/null || true; wait "$busy" 2> /dev/null || true; busy=; fi; }
trap 'stop_busy; rm -rf "$tmp"' EXIT
for i in $(seq "$rounds"); do
  for cond in quiet loaded; do
    if [ "$cond" = loaded ]; then
      taskset -c 1 bash -c 'while :; do :; done' &
      busy=$!
      sleep 0.5
    fi
    for shape in "4096 4096" "4096 11008"; do
      # shellcheck disable=SC2086
      "$build/benchmarks/mxq_gemv_calls" $shape 2 300 |
        sed -n "s/^gemv_mxfp4 \([0-9x]*\) 2 threads: median \([0-9.]*\) us mean \([0-9.]*\) us.*/mxq \1 \2\nmxq-mean \1 \3/p" >> "$tmp/calls.$cond.$i.txt"
      # shellcheck disable=SC2086
      "$build/benchmarks/mxq_gemv_calls" $shape 2 300 interleaved |
        sed -n "s/^gemv_mxfp4_x8 \([0-9x]*\) 2 threads: median \([0-9.]*\) us mean \([0-9.]*\) us.*/mxq-interleaved \1 \2/p" >> "$tmp/calls.$cond.$i.txt"
      # shellcheck disable=SC2086
      "$ggml" $shape 2 300 2>&1 |
        sed -n "s/^gemv_mxfp4 \([0-9x]*\) 2 threads CPU_REPACK: \([0-9.]*\) us.*/llama.cpp-repack \1 \2/p" >> "$tmp/calls.$cond.$i.txt"
    done
    for p in "${progs[@]}"; do
      name=${p%%=*} bin=${p#*=}
      "$bin" --benchmark_filter='^BM_gemv/mxfp4/(4096x4096|4096x11008)/threads:2/real_time$' \
        --benchmark_min_time=0.5 --benchmark_out="$tmp/$name.$cond.$i.json" --benchmark_out_format=json > /dev/null 2>&1
    done
    stop_busy
  done
done
python3 - "$tmp" "$rounds" "${progs[@]}" <<'PY'
import json, statistics, sys, re
tmp, rounds, progs = sys.argv[1], int(sys.argv[2]), [p.split("=")[0] for p in sys.argv[3:]]
t = {}  # (program, shape) -> cond -> [us]
for cond in ("quiet", "loaded"):
    for i in range(1, rounds + 1):
        for line in open(f"{tmp}/calls.{cond}.{i}.txt"):
            p, shape, us = line.split()
            t.setdefault((p, shape), {}).setdefault(cond, []).append(float(us))
        for p in progs:
            for b in json.load(open(f"{tmp}/{p}.{cond}.{i}.json"))["benchmarks"]:
                shape = re.search(r"/(\d+x\d+)/", b["name"]).group(1)
                t.setdefault((p + " (mean)", shape), {}).setdefault(cond, []).append(b["real_time"])
print(f"{'program':22} {'shape':11} {'quiet us':>9} {'loaded us':>10} {'loaded/quiet':>12}")
for (p, shape), v in sorted(t.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    q, l = statistics.median(v["quiet"]), statistics.median(v["loaded"])
    print(f"{p:22} {shape:11} {q:9.1f} {l:10.1f} {l / q:12.2f}")
PY
