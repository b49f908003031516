#!/usr/bin/env bash
# One GPU: a prompt pass over an f16 or q8_0 cache now reads it in f16 (as decode multiplies
# it), not through bf16. Logits of an 8B-shaped slice (2 layers, Q4_0) on the GPU against the
# CPU (float32) for each cache type, this build and the earlier one in .carry/baseline; then
# 8B Q4_0 with the default cache, both builds, to show the default path unchanged.
set -uo pipefail
source scripts/device_env.sh
export R=3
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
[ -f $M/8b-2layers-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null
compare() {  # $1: cache type, $2: the PYTHONPATH that picks the build
  PYTHONPATH=$2 timeout -k 5 200 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu \
    --modes none --n-prompt 64 --n-decode 8 -ctk $1 -ctv $1 2>&1 | grep "rel err"
}
for t in f16 q8_0 bf16; do
  step "logits, $t cache, this build"; compare $t $PYTHONPATH
  step "logits, $t cache, baseline package"; compare $t /tmp/site:$PWD/.carry/baseline
done
wait
step "8B Q4_0, default cache"
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -p 512 -n 128
bench_baseline "8B Q4_0, default cache" -m $M/8b-q4_0.gguf -dev cuda:0 -p 512 -n 128
step done; tail -3 $OUT/bench_err.log
