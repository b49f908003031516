#!/usr/bin/env bash
# One GPU: the weights read after attention (wo, then gate_up) asked of L2 by the attention
# kernel while it runs (LLAMATP_L2_PREFETCH_MB, 0 = off), and the cache's loads marked
# evict-first (LLAMATP_KV_EVICT_FIRST), 8B Q4_0 at depth 0 and 8192, q4_0 and bf16 caches.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 bf16; do
  for variant in "0 0" "0 1" "12 1" "30 1" "12 0" "0 0"; do
    set -- $variant
    step "cache $cache, L2 prefetch $1 MB, KV evict-first $2"
    LLAMATP_L2_PREFETCH_MB=$1 LLAMATP_KV_EVICT_FIRST=$2 T=120 R=3 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none \
      -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  done
done
step done
