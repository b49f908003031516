#!/usr/bin/env bash
# Four GPUs, second part (after scripts/device_4gpu.sh on the same machine): the 70B Q4_0
# rows on 2 and 4 GPUs, and decode at depth 8192 (8B on 1 and 2 GPUs, 70B on 4), `-r 5`.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
[ -f $M/70b-q4_0.gguf ] || synth_reference_models
step bench 70b q4_0
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer,tensor -p 512 -n 128
step depth 8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128 -d 8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -d 8192
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 512 -n 128 -d 8192
step done; tail -3 $OUT/bench_err.log
