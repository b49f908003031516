#!/usr/bin/env bash
# One GPU: decode attention over q8_0/q4_0 codes, this build against an earlier one
# (.carry/baseline), kernel alone and in the 8B model at depth 0 and 8192.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel, this build
timeout -k 5 200 python3 scripts/bench_attention.py --types bf16,q8_0,q4_0
step attention kernel, baseline package
PYTHONPATH=/tmp/site:$PWD/.carry/baseline timeout -k 5 200 python3 scripts/bench_attention.py --types q8_0,q4_0
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 q8_0; do
  step "8B, $cache cache, this build"
  T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  bench_baseline "8B, $cache cache" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
done
step done
