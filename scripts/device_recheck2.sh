#!/usr/bin/env bash
# Two GPUs, 8B Q4_0: -sm none and tensor at depth 0 and 8192 (after prompt-attention changes).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=200
D=cuda:0,cuda:1
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-q4_0.gguf 2>/dev/null
timeout -k 5 100 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices $D --modes tensor --n-prompt 600 --n-ctx 1024 2>&1 | grep -v "^rank\|Warn" | tail -3
timeout -k 5 150 $L bench -r 3 -o md -m $M/8b-q4_0.gguf -dev $D -sm none,tensor -p 512 -n 128 -d 0,8192 2>$OUT/err.log | grep -v '^build' | tee $OUT/bench.md
