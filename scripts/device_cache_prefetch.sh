#!/usr/bin/env bash
# The layer's KV cache asked of L2 by the norm before its attention (LLAMATP_CACHE_PREFETCH_MB,
# per layer and GPU; 0 is off, the same build's baseline), 8B Q4_0 tg128 at depth 0 and 8192:
# over two GPUs (tensor split), where the norm waits on the other rank, and on one.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
run() {  # MB HINT DEVICES SPLIT CACHE
  export LLAMATP_CACHE_PREFETCH_MB=$1 LLAMATP_CACHE_PREFETCH_HINT=$2
  step "prefetch $1 MB ($2), $3 $4, $5 cache"
  bench_md -m $M/8b-q4_0.gguf -dev $3 -sm $4 -p 0 -n 128 -d 0,8192 -ctk $5 -ctv $5
}
for setting in "0 normal" "16 normal" "32 normal" "32 last" "0 normal"; do
  run $setting cuda:0,cuda:1 tensor bf16
done
for setting in "0 normal" "16 normal" "40 normal" "40 last"; do
  run $setting cuda:0 none bf16
done
for cache in q4_0 q8_0; do
  for setting in "0 normal" "24 normal"; do
    run $setting cuda:0 none $cache
  done
done
step done; tail -3 $OUT/bench_err.log
