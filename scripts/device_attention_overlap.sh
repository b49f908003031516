#!/usr/bin/env bash
# Decode attention launched while the QKV GEMV still runs (LLAMATP_ATTENTION_OVERLAP=1: the RoPE
# kernel before it lets it launch before waiting itself) and reading its chunks' first blocks
# before it waits (LLAMATP_ATTENTION_PRELOAD=blocks). The kernel's checks against torch with 4
# blocks read early, greedy tokens and logits of an 8B-shaped 2-layer slice over two GPUs against
# the CPU with both on, then 8B Q4_0 tg128 at depth 0 and 8192 for each run in RUNS
# (GPUs:KV cache type:overlap:blocks; two GPUs tensor split; "-" leaves a variable unset).
#   RUNS="2:bf16:0:0 2:bf16:1:4 1:q8_0:1:1" bash scripts/device_attention_overlap.sh
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
step "kernel checks, LLAMATP_ATTENTION_PRELOAD=4"
LLAMATP_ATTENTION_PRELOAD=4 timeout -k 5 150 python3 scripts/bench_attention.py --shapes 8B,8B/2 2>&1 | grep "^check"
wait
step "2-layer slice over two GPUs against the CPU, LLAMATP_ATTENTION_OVERLAP=1 LLAMATP_ATTENTION_PRELOAD=4"
LLAMATP_ATTENTION_OVERLAP=1 LLAMATP_ATTENTION_PRELOAD=4 timeout -k 5 240 python3 scripts/compare_splits.py \
  $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor --base-device cpu --n-ctx 2560 --n-prompt 2000 \
  --n-decode 16 2>&1 | grep -v "^rank\|Warning"
setting() { [ "$2" = - ] && unset "$1" || export "$1=$2"; }
for run in ${RUNS:-2:bf16:0:0 2:bf16:1:4}; do
  IFS=: read -r gpus cache overlap blocks <<< "$run"
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  step "$gpus GPU(s), $cache cache, LLAMATP_ATTENTION_OVERLAP=$overlap LLAMATP_ATTENTION_PRELOAD=$blocks"
  setting LLAMATP_ATTENTION_OVERLAP "$overlap"; setting LLAMATP_ATTENTION_PRELOAD "$blocks"
  bench_md -m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
done
unset LLAMATP_ATTENTION_OVERLAP LLAMATP_ATTENTION_PRELOAD
step done; tail -3 $OUT/bench_err.log
