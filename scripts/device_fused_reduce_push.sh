#!/usr/bin/env bash
# Four GPUs: the tensor-split join writing each rank's row into every rank's buffer (this
# build) against reading the peers' rows over NVLink (the earlier build in .carry/baseline,
# `git archive REV llamatp scripts | tar -x -C .carry/baseline`): logits and greedy tokens of
# 8B Q4_0 over 4 GPUs against one GPU, then tg128 `-r 5` of 8B Q4_0 over 2 GPUs and 70B Q4_0
# over 4, this build then the baseline.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1 &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf >> $OUT/synth.log 2>&1 &
wait
step logits against one GPU
timeout -k 5 100 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1,cuda:2,cuda:3 --modes tensor 2>&1 | grep -v "Warn\|^rank\|warn" | tail -2
step 8B Q4_0 tensor x2; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
bench_baseline "8B Q4_0 tensor x2" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
X4=cuda:0,cuda:1,cuda:2,cuda:3
step 70B Q4_0 tensor x4; T=100 bench_md -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128
T=100 bench_baseline "70B Q4_0 tensor x4" -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128
step done
