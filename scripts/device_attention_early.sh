#!/usr/bin/env bash
# (Run at build 3d1e9f5; LLAMATP_ATTENTION_EARLY was removed again after it, by 7684dfd.)
# One GPU: does launching the attention chunk kernel early (programmatic dependent launch) cost
# time at depth? 8B Q4_0 tg128 at depth 0 and 8192 (`-r 5`), bf16 and q4_0 caches, with every
# kernel launched early, with the chunk kernel launched after the kernel before it ends
# (LLAMATP_ATTENTION_EARLY=0), and with no kernel launched early (LLAMATP_PDL=0).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
for cache in bf16 q4_0; do
  for env in "LLAMATP_ATTENTION_EARLY=1" "LLAMATP_ATTENTION_EARLY=0" "LLAMATP_PDL=0"; do
    step "$cache cache, $env"
    env $env bash -c "source scripts/device_env.sh; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache" | grep tg128
  done
done
step done; tail -3 $OUT/bench_err.log
