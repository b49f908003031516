#!/usr/bin/env bash
# Two GPUs: tg128 at depth 0 and 8192 of the two-GPU target rows not measured at depth by
# scripts/device_targets.sh (8B F16 and 70B Q4_0 under tensor split), `-r 5`.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null &
wait
step depth, 8B F16; bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
step depth, 70B Q4_0; T=200 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
step done
