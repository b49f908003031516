#!/usr/bin/env bash
# One GPU: the attention chunk kernel letting the merge kernel launch at its end instead of its
# start (LLAMATP_ATTENTION_TRIGGER=late) against the default, in the same run: 8B Q4_0 at depths
# 0 and 8192 with each KV cache type.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 bf16 q8_0; do
  for trigger in start late; do
    step "8B, $cache cache, trigger $trigger"
    LLAMATP_ATTENTION_TRIGGER=$trigger T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 \
      -d 0,8192 -ctk $cache -ctv $cache
  done
done
step done
