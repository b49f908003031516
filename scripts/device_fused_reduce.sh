#!/usr/bin/env bash
# Four GPUs: the all-reduce fused with the residual add and the norm (decode under tensor
# split). Logits and greedy tokens against one GPU (8B Q4_0, tensor over 2 and 4), a short
# `llamatp run`, then tg128 `-r 5` with LLAMATP_FUSED_REDUCE=0 (the same build without the
# fusion: the same run's baseline) and with it, for 8B Q4_0 over 2 GPUs and 70B Q4_0 over 4;
# with it only for 8B F16 and 70B Q4_0 over 2.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth; synth_reference_models > $OUT/synth.log 2>&1
step logits against one GPU
for D in cuda:0,cuda:1 cuda:0,cuda:1,cuda:2,cuda:3; do
  timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices $D --modes tensor 2>&1 | grep -v "Warn\|^rank\|warn" | tail -3
done
step run; timeout -k 5 120 $L run -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p "The capital of France" -n 16 --temp 0 -v 2>&1 | grep -i "all-reduce\|eval time" | cut -c1-160
step "8B Q4_0 tensor x2, without the fusion"; LLAMATP_FUSED_REDUCE=0 bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
step "8B Q4_0 tensor x2, fused"; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
X4=cuda:0,cuda:1,cuda:2,cuda:3
step "70B tensor x4, without the fusion"; T=200 LLAMATP_FUSED_REDUCE=0 bench_md -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128
step "70B tensor x4, fused"; T=200 bench_md -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128
step "8B F16 tensor x2, fused"; bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
step "70B tensor x2, fused"; T=200 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
step done; grep -v "P2P\|^$\|_warn\|warn(" $OUT/bench_err.log | tail -5
