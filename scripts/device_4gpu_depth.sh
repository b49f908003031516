#!/usr/bin/env bash
# Four GPUs: 70B Q4_0 tg128 at depth 0 and 8192 under tensor split, `-r 5`, with this build and
# with the earlier one in .carry/baseline (the same run's baseline). Reuses the model that
# scripts/device_targets.sh wrote to /dev/shm when the machine is still the same.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5 T=300
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_70b_if_missing
step depth, 70B Q4_0 tensor x4
bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 0 -n 128 -d 0,8192
bench_baseline "70B Q4_0 tensor x4" -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 0 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
