#!/usr/bin/env bash
# Kernel speed of a baseline x86-64 build (runtime dispatch to the AVX2 kernels) against the
# -mavx2 build, same machine, same script, alternating the two programs ROUNDS times; prints the
# median time of each benchmark in each program and the ratio baseline / -mavx2 (1.00 = no cost).
#   cmake -S . -B build -DMXQ_BUILD_BENCHMARKS=ON && cmake --build build -j2 --target mxq_bench mxq_bench_baseline
#   bash benchmarks/dispatch_baseline.sh [BUILD (build)] [ROUNDS (3)]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
filter='^(BM_quantize/(mxfp4|mxint4|nvfp4)/4096x4096(/threads:2)?|BM_gemv/(mxfp4|mxint4|nvfp4)/4096x4096/threads:[12]|BM_gemv_f32act/mxfp4/4096x4096/threads:1|BM_gemm/mxfp4/4096x4096x64/threads:1)/real_time$'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$rounds"); do
  for prog in mxq_bench mxq_bench_baseline; do
    "$build/benchmarks/$prog" --benchmark_filter="$filter" --benchmark_min_time=0.3 \
      --benchmark_out="$tmp/$prog.$i.json" --benchmark_out_format=json > /dev/null
  done
done
python3 - "$tmp" "$rounds" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
t = {}
for prog in ("mxq_bench", "mxq_bench_baseline"):
    for i in range(1, rounds + 1):
        for b in json.load(open(f"{tmp}/{prog}.{i}.json"))["benchmarks"]:
            t.setdefault(b["name"], {}).setdefault(prog, []).append(b["real_time"])
print(f"{'benchmark':52} {'-mavx2':>10} {'baseline':>10} {'ratio':>6}")
for name, v in t.items():
    a, b = statistics.median(v["mxq_bench"]), statistics.median(v["mxq_bench_baseline"])
    print(f"{name:52} {a:10.3f} {b:10.3f} {b / a:6.2f}")
PY
