#!/usr/bin/env bash
# One GPU: q4_0 decode attention read one block ahead, with two shifts fewer a word of codes
# (this build), against the build in .carry/baseline: the GPU checks, the kernel alone, and the 8B
# model at depths 0 and 8192 with each KV cache type, twice.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel, this build
timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0,q8_0 --shapes 8B,8B/2
step attention kernel, baseline package
(cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0 --shapes 8B,8B/2)
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for round in 1 2; do
  for cache in q4_0 q8_0 bf16; do
    [ $round = 2 ] && [ $cache != q4_0 ] && continue
    step "8B, $cache cache, this build, round $round"
    T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
    bench_baseline "8B, $cache cache, round $round" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  done
done
step done
