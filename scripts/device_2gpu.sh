#!/usr/bin/env bash
# Two GPUs: the synthetic Llama-3 files of ANCHORS.md, split-mode logits against one GPU,
# and llama-bench style tables for none/layer/tensor, the 70B shape and depth 8192.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300
D=cuda:0,cuda:1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
step synth
synth_reference_models
step logits 8b q4_0, 2 GPUs layer/tensor vs one GPU
timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices $D --modes layer,tensor > $OUT/cmp2.log 2>&1; grep -v "^rank" $OUT/cmp2.log | tail -5
step bench 8b q4_0; bench_md -m $M/8b-q4_0.gguf -dev $D -sm none,layer,tensor -p 512 -n 128
step bench 8b f16; bench_md -m $M/8b-f16.gguf -dev $D -sm none,tensor -p 512 -n 128
step bench 70b q4_0; T=260 bench_md -m $M/70b-q4_0.gguf -dev $D -sm layer,tensor -p 512 -n 128
step depth 8192; bench_md -m $M/8b-q4_0.gguf -dev $D -sm none,tensor -p 512 -n 128 -d 8192
step done; tail -3 $OUT/bench_err.log
