#!/usr/bin/env bash
# Hot batch-1 MXFP4 GEMV (the same matrix called over and over), mxq's packed matrix and its 8-row
# interleaved copy next to llama.cpp's repacked MXFP4 path (../shared/bench's ggml timer, weights in
# the CPU repack buffer), 4096x4096 and 4096x11008 on 1 and 2 threads, alternating in every round
# (this VM's speed drifts by tens of percent within minutes, so only same-round ratios count).
# Every program times each call on its own (20 warm-up calls, then 300) and reports the median;
# the script prints, per shape and thread count, the median over rounds of each program and of
# the per-round ratios llama.cpp / mxq (issue 15's hot target: >= 1.3 for the interleaved layout).
#   cmake --build build -j2 --target mxq_gemv_calls
#   cmake -S ../shared/bench -B /tmp/ggml-bench -DLLAMA_DIR=$(realpath ../shared/llama.cpp) -DCMAKE_BUILD_TYPE=Release
#   cmake --build /tmp/ggml-bench -j2 --target ggml_mxfp4_bench
#   bash benchmarks/gemv_hot.sh [BUILD (build)] [GGML_BENCH (/tmp/ggml-bench/ggml_mxfp4_bench)] [ROUNDS (5)]
set -euo pipefail
build=${1:-build}
ggml=${2:-/tmp/ggml-bench/ggml_mxfp4_bench}
rounds=${3:-5}
calls=$build/benchmarks/mxq_gemv_calls
[ -x "$calls" ] || { echo "gemv_hot.sh: no $calls (build the mxq_gemv_calls target)" >&2; exit 1; }
[ -x "$ggml" ] || { echo "gemv_hot.sh: no ggml bench at $ggml (see the build lines above)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$rounds"); do
  for threads in 1 2; do
    for shape in "4096 4096" "4096 11008"; do
      for layout in packed interleaved; do
        # shellcheck disable=SC2086
        "$calls" $shape "$threads" 300 "$layout" |
          sed -n "s/^gemv_mxfp4\(_x8\)\{0,1\} \([0-9x]*\) \([0-9]*\) threads: median \([0-9.]*\) us.*/mxq-$layout \2 \3 \4 $i/p" >> "$out"
      done
      # shellcheck disable=SC2086
      "$ggml" $shape "$threads" 300 2>&1 |
        sed -n "s/^gemv_mxfp4 \([0-9x]*\) \([0-9]*\) threads CPU_REPACK: \([0-9.]*\) us.*/llama.cpp-repack \1 \2 \3 $i/p" >> "$out"
    done
  done
done
python3 - "$out" <<'PY'
import statistics, sys
t = {}  # (shape, threads) -> program -> round -> us
for line in open(sys.argv[1]):
    p, shape, threads, us, rnd = line.split()
    t.setdefault((shape, int(threads)), {}).setdefault(p, {})[int(rnd)] = float(us)
print("| shape | threads | mxq packed (us) | mxq interleaved (us) | llama.cpp repack (us) | llama.cpp / mxq packed | llama.cpp / mxq interleaved |")
print("|---|---|---|---|---|---|---|")
for (shape, threads), progs in sorted(t.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    pk, il, ll = progs["mxq-packed"], progs["mxq-interleaved"], progs["llama.cpp-repack"]
    rs = sorted(set(pk) & set(il) & set(ll))
    med = lambda d: statistics.median(d[r] for r in rs)
    ratio = lambda d: statistics.median(ll[r] / d[r] for r in rs)
    lo_hi = lambda d: "%.2f-%.2f" % (min(ll[r] / d[r] for r in rs), max(ll[r] / d[r] for r in rs))
    print(f"| {shape} | {threads} | {med(pk):.1f} | {med(il):.1f} | {med(ll):.1f} | {ratio(pk):.2f} ({lo_hi(pk)}) | {ratio(il):.2f} ({lo_hi(il)}) |")
PY
