#!/usr/bin/env bash
# One GPU: the q4_0 KV cache. The attention kernel for bf16, q8_0 and q4_0 caches against a plain
# read of the same bytes, then the q4_0 and q8_0 tilings for the 8B heads.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
step attention kernel against a plain read
timeout -k 5 240 python3 scripts/bench_attention.py --types bf16,q8_0,q4_0
step q4_0 and q8_0 tilings, 8B heads
timeout -k 5 300 python3 scripts/bench_attention.py --types q4_0,q8_0 --shapes 8B --sweep \
  --grid block_n=64,128 programs_per_sm=1,2,4 num_warps=4,8 num_stages=1,3 | grep '^sweep'
step done
