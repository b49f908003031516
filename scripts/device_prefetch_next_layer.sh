#!/usr/bin/env bash
# Two GPUs: decode attention's merge kernel asking L2 for the next layer's keys and values
# (LLAMATP_PREFETCH=1) against the same build without (LLAMATP_PREFETCH=0), in turn: tg128 `-r 5`
# at depth 0 and 8192 of 8B Q4_0 on one GPU (bf16 and q8_0 caches) and over two (tensor, bf16).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
D="-p 0 -n 128 -d 0,8192"
for run in "-dev cuda:0 -sm none" "-dev cuda:0 -sm none -ctk q8_0 -ctv q8_0" "-dev cuda:0,cuda:1 -sm tensor"; do
  for prefetch in 0 1; do
    step "LLAMATP_PREFETCH=$prefetch $run"
    LLAMATP_PREFETCH=$prefetch bench_md -m $M/8b-q4_0.gguf $run $D
  done
done
step done; tail -3 $OUT/bench_err.log
