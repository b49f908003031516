#!/usr/bin/env bash
# One GPU: decode attention over q8_0/q4_0 codes with one running softmax per warp's slice of keys
# (LLAMATP_ATTENTION_SLICES=4) against one for the whole block (1), kernel alone and in the 8B model.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
for slices in 1 4; do
  step "attention kernel, slices $slices"
  LLAMATP_ATTENTION_SLICES=$slices timeout -k 5 200 python3 scripts/bench_attention.py --types q8_0,q4_0
done
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 q8_0; do
  for slices in 1 4; do
    step "8B, $cache cache, slices $slices"
    LLAMATP_ATTENTION_SLICES=$slices T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 \
      -ctk $cache -ctv $cache
  done
done
step done
