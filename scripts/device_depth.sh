#!/usr/bin/env bash
# One GPU: 8B Q4_0 decode at depth 0 and 8192, this tree and (if present) the package in
# .carry/baseline, in the same run.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
step depth, this tree; bench_md -m $M/8b-q4_0.gguf -p 512 -n 128 -d 0,8192
bench_baseline "depth" -m $M/8b-q4_0.gguf -p 512 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
