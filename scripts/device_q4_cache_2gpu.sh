#!/usr/bin/env bash
# Two GPUs: a q4_0 KV cache under split. Logits of layer and tensor split against one GPU on an
# 8B-shaped slice with q4_0 K and V, then 8B Q4_0 tg128 over two GPUs (tensor) at depth 0 and 8192
# (`-r 5`) with the default, q8_0 and q4_0 caches.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_8b_and_slice
step logits with a q4_0 cache, 2 GPUs layer and tensor against one
timeout -k 5 180 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes layer,tensor \
  -ctk q4_0 -ctv q4_0 2>&1 | grep -v "^rank" | tail -6
step depth 0 and 8192, tensor over 2
for cache in "" "-ctk q8_0 -ctv q8_0" "-ctk q4_0 -ctv q4_0"; do
  bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 $cache
done
step done; tail -3 $OUT/bench_err.log
