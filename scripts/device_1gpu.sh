#!/usr/bin/env bash
# One GPU: kernel timings (and a tiling sweep), CUDA-vs-CPU logits on an 8B-shaped slice,
# 8B benchmarks. Run from the repository root on the GPU machine; $OUT collects the logs.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step synth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null &
wait
step gemv kernels; timeout -k 5 120 python3 scripts/bench_gemv.py --types Q4_0,Q8_0,Q4_K,Q6_K --out $OUT/gemv.json > $OUT/gemv.log 2>&1; tail -45 $OUT/gemv.log
step cuda vs cpu logits; timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 2>&1 | grep -v "^rank"
step bench 8b q4_0; timeout -k 5 200 $L bench -m $M/8b-q4_0.gguf -p 512 -n 128 -r 3 -o md 2>$OUT/bench_err.log | tee $OUT/bench_8b_q4_0.md; tail -3 $OUT/bench_err.log
step sweep; timeout -k 5 170 python3 scripts/bench_gemv.py --sweep --out $OUT/sweep.json > $OUT/sweep.log 2>&1; tail -25 $OUT/sweep.log
