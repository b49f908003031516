#!/usr/bin/env bash
# One GPU: 8B Q4_0 tg128 at depth 0 and 8192 with the bf16, q8_0 and q4_0 caches (`-r 5`), and the
# attention kernel against a plain read of the cache.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel against a plain read
timeout -k 5 200 python3 scripts/bench_attention.py --types bf16,q8_0,q4_0 --shapes 8B | grep -v "^check"
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in bf16 q8_0 q4_0; do
  step "8B, $cache cache"
  T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
done
step done
