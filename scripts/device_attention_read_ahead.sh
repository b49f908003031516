#!/usr/bin/env bash
# One GPU: q4_0 decode attention with two shifts fewer a word of codes, read one block ahead or
# not (LLAMATP_Q4_READ_AHEAD=0), against the build in .carry/baseline: the kernel alone and the 8B
# model at depths 0 and 8192, twice.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
for ra in 1 0; do
  step "attention kernel, this build, read ahead $ra"
  LLAMATP_Q4_READ_AHEAD=$ra timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0 --shapes 8B,8B/2
done
step attention kernel, baseline package
(cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0 --shapes 8B,8B/2)
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for round in 1 2; do
  for ra in 1 0; do
    step "8B, q4_0 cache, this build, read ahead $ra, round $round"
    LLAMATP_Q4_READ_AHEAD=$ra T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
  done
  bench_baseline "8B, q4_0 cache, round $round" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
done
step done
