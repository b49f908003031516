#!/usr/bin/env bash
# One GPU: decode attention with keys as the rows of its products (LLAMATP_ATTENTION_KEYS_MAJOR=1,
# Hopper's warpgroup products) against queries as rows (the default), in the same run: the GPU
# checks and the kernel alone for every cache type, and the 8B model at depths 0 and 8192.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
for km in 1 0; do
  step "attention kernel, keys major $km"
  LLAMATP_ATTENTION_KEYS_MAJOR=$km timeout -k 5 240 python3 scripts/bench_attention.py --types bf16,q8_0,q4_0
done
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 bf16 q8_0; do
  for km in 1 0; do
    step "8B, $cache cache, keys major $km"
    LLAMATP_ATTENTION_KEYS_MAJOR=$km T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  done
done
step done
