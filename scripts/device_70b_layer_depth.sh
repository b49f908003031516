#!/usr/bin/env bash
# Four GPUs: the last target row not yet measured at depth, 70B Q4_0 layer-split over 4 GPUs,
# tg128 at depth 0 and 8192 (`-r 5`, the default cache), with 70B over 4 tensor-split beside it.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth 70B Q4_0
synth_70b_if_missing
step 70B Q4_0 layer x4, depth 0 and 8192
T=400 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer -p 0 -n 128 -d 0,8192
step 70B Q4_0 tensor x4, depth 0 and 8192
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 0 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
