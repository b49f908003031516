#!/usr/bin/env bash
# Four GPUs: the 70B Q4_0 target rows (layer and tensor, pp512 and tg128, `-r 5`) with this build
# and with the earlier one in .carry/baseline in the same run, then tg128 at depth 8192 (tensor).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5 T=300
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_70b_if_missing
ALL=cuda:0,cuda:1,cuda:2,cuda:3
step 70B Q4_0 x4, this build
bench_md -m $M/70b-q4_0.gguf -dev $ALL -sm layer,tensor -p 512 -n 128
bench_baseline "70B Q4_0 x4" -m $M/70b-q4_0.gguf -dev $ALL -sm layer,tensor -p 512 -n 128
step depth, 70B Q4_0 tensor x4, this build
bench_md -m $M/70b-q4_0.gguf -dev $ALL -sm tensor -p 0 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
