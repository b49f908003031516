#!/usr/bin/env bash
# Two GPUs, after changes to the launcher, the loader's checks or the command line: split-mode
# logits against one GPU on an 8B-shaped slice, one bad input's single error line, and 8B Q4_0
# pp512/tg128 (`-r 3`) on one GPU and over two (tensor) beside the earlier build in
# .carry/baseline (`git archive REV llamatp scripts | tar -x -C .carry/baseline`).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
synth_8b_and_slice
step logits, 2 GPUs layer and tensor against one
timeout -k 5 180 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes layer,tensor 2>&1 | grep -v "^rank" | tail -6
step a context no GPU holds
timeout -k 5 120 $L run -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -c 100000000 -p hi; echo "exit $?"
step 8B Q4_0, this build
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 512 -n 128
bench_baseline "8B Q4_0" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 512 -n 128
step done; tail -3 $OUT/bench_err.log
