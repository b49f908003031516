#!/usr/bin/env bash
# Four GPUs: q8_0 keys through 8-bit integer tensor-core dots (this build) against keys
# converted to bf16 first (the earlier build in .carry/baseline, `git archive REV llamatp
# scripts | tar -x -C .carry/baseline`): the attention kernel's GPU checks, timings and a
# sweep of its q8_0 tilings (scripts/bench_attention.py, GPU 2; the baseline's on GPU 3),
# beside tg128 `-r 5` at depth 0 and 8192 of 8B Q4_0 with a q8_0 cache on one GPU and over
# 2 (tensor), this build then the baseline (GPUs 0 and 1).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
(CUDA_VISIBLE_DEVICES=2 timeout -k 5 240 python3 scripts/bench_attention.py --types q8_0 --sweep > $OUT/attention.log 2>&1
 cd .carry/baseline && CUDA_VISIBLE_DEVICES=3 PYTHONPATH=/tmp/site:$PWD timeout -k 5 120 \
   python3 scripts/bench_attention.py > $OUT/attention_baseline.log 2>&1) &
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1
Q8="-ctk q8_0 -ctv q8_0 -p 0 -n 128 -d 0,8192"
step 8B Q4_0 x1, q8_0 cache; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 $Q8
bench_baseline "8B Q4_0 x1, q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0 $Q8
step 8B Q4_0 tensor x2, q8_0 cache; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $Q8
bench_baseline "8B Q4_0 tensor x2, q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $Q8
wait
step attention, this build; grep -v "Warn\|warn" $OUT/attention.log
step attention, baseline; grep -v "Warn\|warn" $OUT/attention_baseline.log
step done; tail -3 $OUT/bench_err.log
