#!/usr/bin/env bash
# One GPU, quick: CUDA-vs-CPU logits on an 8B-shaped slice and the 8B Q4_0 benchmark.
set -uo pipefail
source scripts/device_env.sh
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
[ -f $M/8b-2layers-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null
wait
timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 2>&1 | grep -v "^rank" | tail -4
timeout -k 5 200 $L bench -m $M/8b-q4_0.gguf -p 512 -n 128 -r 3 -o md 2>$OUT/bench_err.log | tee $OUT/bench_8b_q4_0.md; tail -3 $OUT/bench_err.log
