#!/usr/bin/env bash
# Two GPUs: decode attention that asks L2 for its chunk's keys and values before it waits for
# the kernel before it (this build) against one that does not (the earlier build in
# .carry/baseline, `git archive REV llamatp scripts | tar -x -C .carry/baseline`): tg128
# `-r 5` at depth 0 and 8192 of 8B Q4_0 over 2 GPUs (tensor), then on one, each build in turn.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=120 R=5 T=60
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1
D="-p 0 -n 128 -d 0,8192"
step 8B Q4_0 tensor x2; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $D
bench_baseline "8B Q4_0 tensor x2" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor $D
step 8B Q4_0 x1; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 $D
bench_baseline "8B Q4_0 x1" -m $M/8b-q4_0.gguf -dev cuda:0 $D
step done; tail -3 $OUT/bench_err.log
