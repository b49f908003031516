#!/usr/bin/env bash
# Four GPUs: tg128 at depth 0 and 8192, `-r 5`, of the rows the depth target is measured on:
# 8B Q4_0 on one GPU (the default cache, and q8_0 K and V), over 2 GPUs and 70B Q4_0 over 4
# (tensor split); then the two tensor-split rows nearest their tg targets (8B Q4_0 over 2 GPUs,
# 70B Q4_0 over 4) with the earlier build in .carry/baseline (`git archive REV llamatp scripts
# | tar -x -C .carry/baseline`, the same run's baseline). Reuses the models
# scripts/device_targets.sh wrote to /dev/shm when the machine is still the same.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
synth_70b_if_missing
step depth 0 and 8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 0 -n 128 -d 0,8192
bench_baseline "8B Q4_0 tensor x2" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
T=300 bench_baseline "70B Q4_0 tensor x4" -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 0 -n 128
step done; tail -3 $OUT/bench_err.log
