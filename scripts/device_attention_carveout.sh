#!/usr/bin/env bash
# Decode attention launched while the QKV GEMV runs (LLAMATP_ATTENTION_OVERLAP=1, blocks read before
# the wait: LLAMATP_ATTENTION_PRELOAD), against the default launch, with every Triton kernel asking
# for one L1/shared-memory split (scripts/carveout/sitecustomize.py, LLAMATP_PROBE_CARVEOUT=percent)
# or the driver's choice ("-"). 8B Q4_0 tg128 at the depths named, for each run in RUNS
# (GPUs:KV cache type:overlap:blocks:carveout:depths; two GPUs tensor split; "-" leaves it unset).
#   RUNS="2:bf16:0:0:-:0,8192 2:bf16:1:4:100:0,8192" bash scripts/device_attention_carveout.sh
set -uo pipefail
source scripts/device_env.sh
export PYTHONPATH=$PWD/scripts/carveout:$PYTHONPATH LLAMATP_WATCHDOG=300 R=${R:-3} T=150
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
rated_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
setting() { [ "$2" = - ] && unset "$1" || export "$1=$2"; }
for run in $RUNS; do
  IFS=: read -r gpus cache overlap blocks carveout depths <<< "$run"
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  step "$gpus GPU(s), $cache cache, OVERLAP=$overlap PRELOAD=$blocks CARVEOUT=$carveout"
  setting LLAMATP_ATTENTION_OVERLAP "$overlap"; setting LLAMATP_ATTENTION_PRELOAD "$blocks"
  setting LLAMATP_PROBE_CARVEOUT "$carveout"
  bench_md -m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d $depths -ctk $cache -ctv $cache
done
step done; tail -3 $OUT/bench_err.log
