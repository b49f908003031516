#!/usr/bin/env bash
# Two GPUs: the q8_0 decode attention tiling with two key blocks in flight (this build) against
# one (the earlier build in .carry/baseline): tg128 `-r 5` at depth 0 and 8192 of 8B Q4_0 with
# a q8_0 cache on one GPU and over 2 (tensor), this build then the baseline.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1
Q8="-ctk q8_0 -ctv q8_0 -p 0 -n 128 -d 0,8192"
step 8B Q4_0 x1, q8_0 cache; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 $Q8
bench_baseline "8B Q4_0 x1, q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0 $Q8
step 8B Q4_0 tensor x2, q8_0 cache; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $Q8
bench_baseline "8B Q4_0 tensor x2, q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $Q8
step done; tail -3 $OUT/bench_err.log
