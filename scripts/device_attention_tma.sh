#!/usr/bin/env bash
# Float-cache decode attention with K and V blocks brought in by TMA where a chunk holds two blocks or
# more (LLAMATP_ATTENTION_TMA=1; the default on Hopper GPUs with fast memory, `kernels.reads_by_tma`)
# against pointer loads only (LLAMATP_ATTENTION_TMA=0): the kernel
# alone with its check against torch (`bench_attention.py`, bf16), then 8B Q4_0 tg128 at depth 0 and
# 8192 over two GPUs (TWO settings) and on one (ONE settings).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
for tma in ${KERNEL:-0 1}; do
  step "kernel alone, LLAMATP_ATTENTION_TMA=$tma"
  LLAMATP_ATTENTION_TMA=$tma timeout -k 5 150 python3 scripts/bench_attention.py --types bf16 --shapes 8B,8B/2 2>&1 | grep -v "^WARN"
done
wait
for tma in ${TWO:-0 1 0 1}; do
  step "two GPUs tensor, LLAMATP_ATTENTION_TMA=$tma"
  LLAMATP_ATTENTION_TMA=$tma bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
done
for tma in ${ONE:-0 1 0 1}; do
  step "one GPU, LLAMATP_ATTENTION_TMA=$tma"
  LLAMATP_ATTENTION_TMA=$tma bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
done
step done; tail -3 $OUT/bench_err.log
