#!/usr/bin/env bash
# Two GPUs: tg128 at depth 0 and 8192 (`-r 5`) of every target row two GPUs can hold: 8B Q4_0 on
# one GPU and over two (the default cache and q8_0 K and V), 8B F16 and 70B Q4_0 over two (tensor
# split); first, on GPU 0, the attention kernel against a plain read of the same bytes
# (`bench_attention.py`).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step attention kernel against a plain read
timeout -k 5 120 python3 scripts/bench_attention.py | grep -v '^check'
synth_reference_models > /dev/null
step depth 0 and 8192
for cache in "" "-ctk q8_0 -ctv q8_0"; do
  bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 $cache
  bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 $cache
done
bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
