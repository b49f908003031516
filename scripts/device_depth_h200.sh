#!/usr/bin/env bash
# One or two GPUs (run on H200s): the attention kernel against a plain read of the same bytes for
# bf16, q8_0 and q4_0 caches, then 8B Q4_0 tg128 at depth 0 and 8192 (`-r 5`) on one GPU with each
# cache type.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
step attention kernel against a plain read
timeout -k 5 240 python3 scripts/bench_attention.py --types bf16,q8_0,q4_0 | grep -v '^check.*pos'
step depth 0 and 8192, one GPU
for cache in "" "-ctk q8_0 -ctv q8_0" "-ctk q4_0 -ctv q4_0"; do
  bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 $cache
done
step done; tail -3 $OUT/bench_err.log
