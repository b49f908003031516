#!/usr/bin/env bash
# Long-context steps whose attention asks for the TMA pipeline's first blocks before it waits:
# `device_long_context_graph.sh` for 8B on one GPU and over two (this build against the one in
# .carry/baseline, bf16 cache, depths 0 and 8192, with its kernel checks and the 2-layer slice
# against the CPU), then this build on one GPU with each tiling in TILINGS (more pipeline stages:
# more blocks asked for before the wait; LLAMATP_ATTENTION_TILING sets it for every step).
#   TILINGS="32,2,4,4,0 32,2,4,5,0" bash scripts/device_tma_before_wait.sh
set -uo pipefail
RUNS="1:bf16:0,8192 2:bf16:0,8192" bash scripts/device_long_context_graph.sh
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=${R:-5} T=200
for tiling in ${TILINGS:-32,2,4,4,0 32,2,4,5,0}; do
  step "1 GPU(s), bf16 cache, this build, LLAMATP_ATTENTION_TILING=$tiling"
  LLAMATP_ATTENTION_TILING=$tiling bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
done
step done
