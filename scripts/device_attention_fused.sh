#!/usr/bin/env bash
# Decode attention that rotates the query and the new key and stores the new key and value
# itself (no RoPE kernel between it and the QKV GEMV, during which it reads its chunks' first
# LLAMATP_ATTENTION_PRELOAD blocks): the kernel's checks against torch, greedy tokens and logits
# of an 8B-shaped 2-layer slice on one GPU and over two against the CPU, then 8B Q4_0 tg128 at
# depth 0 and 8192 for each run in RUNS (build:GPUs:KV cache type:blocks, build "new" this one,
# "base" the one in .carry/baseline; two GPUs tensor split; blocks "-" leaves the variable unset).
#   RUNS="base:2:bf16:- new:2:bf16:- new:2:bf16:4" bash scripts/device_attention_fused.sh
# CHECK_BLOCKS lists the LLAMATP_ATTENTION_PRELOAD settings of the kernel checks (default "- 4").
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
python3 -c "
import torch; from llamatp.quant.gemv import memory_bandwidth, sm_count
d = torch.device('cuda:0'); bw = memory_bandwidth(d)
print(f'rated memory bandwidth {bw / 1e9:.0f} GB/s, {bw / sm_count(d) / 1e9:.1f} GB/s a multiprocessor')"
synth_8b_and_slice &
for blocks in ${CHECK_BLOCKS:-- 4}; do
  step "kernel checks, LLAMATP_ATTENTION_PRELOAD=$blocks"
  [ "$blocks" = - ] && unset LLAMATP_ATTENTION_PRELOAD || export LLAMATP_ATTENTION_PRELOAD=$blocks
  timeout -k 5 150 python3 scripts/bench_attention.py --shapes 8B,8B/2 --types bf16,q8_0,q4_0 2>&1 | grep "^check\|Error\|error"
done
unset LLAMATP_ATTENTION_PRELOAD
wait
step "2-layer slice on one GPU and over two against the CPU"
timeout -k 5 240 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes none,tensor \
  --base-device cpu --n-ctx 2560 --n-prompt 2000 --n-decode 16 2>&1 | grep -v "^rank\|Warning"
for run in ${RUNS:-base:2:bf16:- new:2:bf16:-}; do
  IFS=: read -r build gpus cache blocks <<< "$run"
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  [ "$blocks" = - ] && unset LLAMATP_ATTENTION_PRELOAD || export LLAMATP_ATTENTION_PRELOAD=$blocks
  args="-m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache"
  if [ "$build" = base ]; then
    bench_baseline "$gpus GPU(s), $cache cache, LLAMATP_ATTENTION_PRELOAD=$blocks" $args
  else
    step "$gpus GPU(s), $cache cache, LLAMATP_ATTENTION_PRELOAD=$blocks"; bench_md $args
  fi
done
unset LLAMATP_ATTENTION_PRELOAD
step done; tail -3 $OUT/bench_err.log
