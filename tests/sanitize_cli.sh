#!/usr/bin/env bash
# The mxq program end to end under AddressSanitizer + UBSan (CI's sanitizer pass: the code users
# run, not only the library tests): every command on the bundled model at reduced size, one recipe
# per family, its outputs read back by eval-ppl dense and packed, and the exports. Any sanitizer
# report aborts the program (-fno-sanitize-recover=all), so a non-zero exit anywhere fails CI.
#   bash tests/sanitize_cli.sh BUILD_DIR (built with -DMXQ_SANITIZE=address,undefined -DMXQ_BUILD_TOOLS=ON)
set -euo pipefail
build=${1:?usage: sanitize_cli.sh BUILD_DIR}
cd "$(dirname "$0")/.."
mxq=$build/mxq
[ -x "$mxq" ] || mxq=$(find "$build" -name mxq -type f -perm -u+x | head -1)
[ -n "$mxq" ] || { echo "sanitize_cli.sh: no mxq program under $build" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
m=examples/models/code-llama
cal="--calib examples/data/code/code-calib-128x256.u16 --calib-windows 2"
ppl="--tokens examples/data/code/code-test.u16 --windows 2"
step() { echo "== mxq $*"; "$mxq" "$@" > "$work/out.txt" 2> "$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }; tail -1 "$work/out.txt"; }
# Bad input must be a named error (exit 1), never a sanitizer abort.
refused() { echo "== (refused) mxq $*"; set +e; "$mxq" "$@" > /dev/null 2> "$work/err.txt"; rc=$?; set -e
  [ "$rc" = 1 ] || { echo "expected exit 1, got $rc:" >&2; cat "$work/err.txt" >&2; exit 1; }; tail -1 "$work/err.txt"; }

step formats
step eval-ppl --model $m $ppl
step tokenize --model $m --text README.md --out "$work/readme.u32"
step eval-ppl --model $m --text README.md --windows 1
step quantize-model --model $m --format mxfp4 --method rtn --out "$work/rtn"
step quantize-model --model $m --format nvfp4 --method gptq $cal --scale-rule 4over6 --out "$work/gptq" --max-shard-size 1MB
step quantize-model --model $m --format mxint4 --method awq+gptq $cal --awq-windows 1 --out "$work/awq"
step quantize-model --model $m --format mxint4 --method sq+gptq --act-format mxint8 $cal --out "$work/sq"
step quantize-model --model $m --format mxfp4 --method mr-gptq --qep --refine 1 $cal --act-format mxfp4 --out "$work/mr"
for d in rtn gptq awq sq mr; do
  step eval-ppl --model "$work/$d" $ppl
  step eval-ppl --model "$work/$d" $ppl --packed f32
  step eval-ppl --model "$work/$d" $ppl --packed int8
done
step export --model "$work/rtn" --to gguf --out "$work/rtn.gguf"
step export --model "$work/gptq" --to compressed-tensors --out "$work/ct"
step export --model "$work/gptq" --to modelopt --out "$work/mo"
step quantize-model --model $m --format mxfp4 --method gptq $cal --out-format compressed-tensors --out "$work/mxfp4-ct"
r=tests/data/conformance/mx/inputs/random.npy  # [64, 256]: a weight, and as its own 64 input tokens
step quantize-layer --format mxint4 --method sq+awq+gptq --act-format mxint8 --weight $r --inputs $r --out "$work/q1.npy"
step quantize-layer --format mxfp4 --method mr-gptq --refine 1 --weight $r --inputs $r --out "$work/q2.npy"
step fake-quant --format nvfp4 --scale-rule 4over6 tests/data/conformance/mx/inputs/heavy_tail.npy "$work/fq.npy"
refused quantize-model --model $m --format mxfp5 --method rtn --out "$work/bad"
refused eval-ppl --model "$work" $ppl
refused export --model "$work/mr" --to gguf --out "$work/mr.gguf"
mkdir -p "$work/hostile"
cp $m/config.json $m/tokenizer.json "$work/hostile/"
for bad in tests/fuzz/corpus/fuzz_safetensors/bad_* tests/fuzz/corpus/fuzz_packed/bad_*; do
  cp "$bad" "$work/hostile/model.safetensors"
  refused eval-ppl --model "$work/hostile" $ppl
done
cp tests/fuzz/corpus/fuzz_config/bad_types "$work/hostile/config.json"
refused quantize-model --model "$work/hostile" --format mxfp4 --method rtn --out "$work/bad"
echo "sanitize_cli.sh: all commands ran clean under the sanitizers"
