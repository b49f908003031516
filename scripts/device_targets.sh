#!/usr/bin/env bash
# Four GPUs: every row of the speed targets (8B Q4_0 on 1 and 2 GPUs, 8B F16 on 2, 70B Q4_0 on
# 2 and 4, tensor and layer), `-r 5`. The depth rows and the baseline are
# scripts/device_depth_targets.sh, run next on the same machine (the models stay in /dev/shm).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth; synth_reference_models > $OUT/synth.log 2>&1
step targets
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor,layer -p 512 -n 128
step done; tail -3 $OUT/bench_err.log
