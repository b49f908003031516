#!/usr/bin/env bash
# Two GPUs: decode attention over a q8_0 cache read as int32 words and converted without
# conversion instructions, against the earlier build in .carry/baseline (`git archive REV
# llamatp scripts | tar -x -C .carry/baseline`): kernel checks and times (`bench_attention.py`,
# both builds, GPU 0), then 8B Q4_0 with a q8_0 cache at depth 0 and 8192 on one GPU and over
# two (tensor split), both builds.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
step attention kernel, baseline package
(cd .carry/baseline && timeout -k 5 120 python3 scripts/bench_attention.py)
step attention kernel, this build
timeout -k 5 120 python3 scripts/bench_attention.py
wait
for devs in cuda:0 cuda:0,cuda:1; do
  sm=$([ $devs = cuda:0 ] && echo none || echo tensor)
  step "8B Q4_0 q8_0 cache on $devs, depth 0 and 8192"
  bench_md -m $M/8b-q4_0.gguf -dev $devs -sm $sm -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
  bench_baseline "8B Q4_0 q8_0 cache on $devs, depth 0 and 8192" -m $M/8b-q4_0.gguf -dev $devs -sm $sm -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
done
step done; tail -3 $OUT/bench_err.log
