#!/usr/bin/env bash
# One GPU: the 8B Q4_0 depth rows (tg128 at depth 0 and 8192, `-r 5`) with the default cache and
# with a q8_0 cache, and the q8_0 row again with the earlier build in .carry/baseline (`git
# archive REV llamatp scripts | tar -x -C .carry/baseline`, the same run's baseline).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
step depth 0 and 8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
bench_baseline "q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
step done; tail -3 $OUT/bench_err.log
