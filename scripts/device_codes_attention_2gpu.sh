#!/usr/bin/env bash
# Two GPUs: the q8_0/q4_0 decode attention of this build against an earlier one
# (.carry/baseline): logits of tensor split against one GPU with each cache, then 8B Q4_0
# tensor-split tg128 at depth 0 and 8192 (`-r 5`) with q8_0 and q4_0 caches.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_8b_and_slice
for cache in q8_0 q4_0; do
  step "logits with a $cache cache, 2 GPUs tensor against one"
  timeout -k 5 180 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor \
    -ctk $cache -ctv $cache 2>&1 | grep -v "^rank" | tail -4
done
for cache in q8_0 q4_0; do
  step "8B over 2, $cache cache, this build"
  bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  bench_baseline "8B over 2, $cache cache" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 \
    -ctk $cache -ctv $cache
done
step done; tail -3 $OUT/bench_err.log
