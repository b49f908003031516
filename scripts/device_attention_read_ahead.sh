#!/usr/bin/env bash
# One GPU: decode attention over q4_0/q8_0 codes read one block ahead into registers (this build)
# against the build in .carry/baseline: kernel alone (and a sweep of tilings) and the 8B model at
# depths 0 and 8192.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel, baseline package
(cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0,q8_0 --shapes 8B,8B/2)
step attention kernel, this build, sweep
timeout -k 5 300 python3 scripts/bench_attention.py --types q4_0,q8_0 --shapes 8B,8B/2 --sweep \
  --grid block_n=64,128 programs_per_sm=2,3 num_warps=4 num_stages=1
step synth 8B Q4_0
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null; ls -la $M
for cache in q4_0 q8_0; do
  step "8B, $cache cache, this build"
  T=150 R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  bench_baseline "8B, $cache cache" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
done
step done
