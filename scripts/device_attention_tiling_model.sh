#!/usr/bin/env bash
# Decode attention tilings timed in the model, where kernels launch early and tilings rank
# otherwise than alone: 8B Q4_0 tg128 at depth 0 and 8192 (`-r 3`) for each tiling in TILINGS
# (LLAMATP_ATTENTION_TILING values; "default" is the chosen one), each KV cache type in CACHES,
# on one GPU and, where there are two, tensor split over two (GPUS="1 2", the default, or one of them).
#   TILINGS="default 64,2,4,1,1" CACHES="q4_0 q8_0" GPUS=1 bash scripts/device_attention_tiling_model.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
for cache in ${CACHES:-bf16}; do
  for tiling in ${TILINGS:-default}; do
    [ "$tiling" = default ] && unset LLAMATP_ATTENTION_TILING || export LLAMATP_ATTENTION_TILING=$tiling
    if [[ " ${GPUS:-1 2} " == *" 1 "* ]]; then
      step "one GPU, $cache cache, tiling $tiling"
      bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
    fi
    if [ "$gpus" -ge 2 ] && [[ " ${GPUS:-1 2} " == *" 2 "* ]]; then
      step "two GPUs tensor, $cache cache, tiling $tiling"
      bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
    fi
  done
done
unset LLAMATP_ATTENTION_TILING
step done; tail -3 $OUT/bench_err.log
