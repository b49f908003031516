#!/usr/bin/env bash
# Two GPUs, part 1: the decode attention kernel with bf16 and q8_0 caches (checks, timings, a
# tiling sweep) on GPU 0 while the bf16 GEMV's tilings are swept on GPU 1 (--apply: the rest of
# this machine's runs use the best); then 8B Q4_0 tg128 at depth 0 and 8192 on one GPU with the
# default cache and with -ctk q8_0 -ctv q8_0, `-r 5`.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth and sweeps
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
CUDA_VISIBLE_DEVICES=0 timeout -k 5 300 python3 scripts/bench_attention.py --sweep > $OUT/attention.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout -k 5 200 python3 scripts/bench_gemv.py --sweep --dense-only --apply > $OUT/dense_sweep.log 2>&1 &
wait; cat $OUT/attention.log $OUT/dense_sweep.log | grep -v Warning
step depth, 8B Q4_0 on one GPU
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
step done
