#!/usr/bin/env bash
# Decode attention reading each chunk's first block before it waits for the kernel before it
# (LLAMATP_ATTENTION_PRELOAD=1) against not (=0): the kernel's checks against torch on the GPU,
# then 8B Q4_0 tg128 at depth 0 and 8192 for each case in CASES (GPUs:KV cache type; two GPUs
# tensor split) and each setting in SETTINGS ("default" leaves the variable unset), in turn.
#   CASES="1:q4_0 2:q4_0" SETTINGS="0 1 0 1" bash scripts/device_attention_preload.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
rated_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
step "kernel checks, LLAMATP_ATTENTION_PRELOAD=1"
LLAMATP_ATTENTION_PRELOAD=1 timeout -k 5 150 python3 scripts/bench_attention.py --shapes 8B,8B/2 2>&1 | grep -v "^WARN"
wait
for case in ${CASES:-2:bf16 1:bf16 1:q4_0 1:q8_0}; do
  gpus=${case%%:*} cache=${case#*:}
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  for preload in ${SETTINGS:-0 1}; do
    step "$gpus GPU(s), $cache cache, LLAMATP_ATTENTION_PRELOAD=$preload"
    [ "$preload" = default ] && unset LLAMATP_ATTENTION_PRELOAD || export LLAMATP_ATTENTION_PRELOAD=$preload
    bench_md -m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d 0,8192 \
      -ctk $cache -ctv $cache
  done
done
unset LLAMATP_ATTENTION_PRELOAD
step done; tail -3 $OUT/bench_err.log
