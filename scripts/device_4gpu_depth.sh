#!/usr/bin/env bash
# Four GPUs: decode at depth 0 and 8192 under tensor split, 70B Q4_0 on 4 GPUs and 8B Q4_0 on 2, `-r 5`.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null &
wait
step depth, 8b q4_0 tensor x2; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -d 0,8192
step depth, 70b q4_0 tensor x4; T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 512 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
