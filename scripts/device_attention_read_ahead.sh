#!/usr/bin/env bash
# One GPU: q4_0 decode attention read one block ahead (this build; blocks of 128 keys, and of 64
# with LLAMATP_Q4_BLOCK=64) against the build in .carry/baseline: kernel alone (and a sweep of
# tilings) and the 8B model at depths 0 and 8192.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel, this build, sweep
timeout -k 5 300 python3 scripts/bench_attention.py --types q4_0 --shapes 8B,8B/2 --sweep \
  --grid block_n=64,128 programs_per_sm=2 num_warps=4 num_stages=1 read_ahead=0,1
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for round in 1 2; do
  step "8B, q4_0 cache, this build, round $round"
  T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
  step "8B, q4_0 cache, this build, blocks of 64 keys, round $round"
  LLAMATP_Q4_BLOCK=64 T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
  bench_baseline "8B, q4_0 cache, round $round" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
done
step done
