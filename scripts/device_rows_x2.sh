#!/usr/bin/env bash
# Two GPUs: every target row two GPUs hold (8B Q4_0 on one GPU and over two, 8B F16 and 70B Q4_0
# over two, tensor split), pp512 and tg128 at depth 0 and 8192, `-r 5`; the 8B Q4_0 rows' tg128
# at depth 0 and 8192 over q8_0 and q4_0 caches too; then the 8B Q4_0 rows' tg128 with the
# earlier build in .carry/baseline (the same run's baseline). PART=1 writes the files and runs
# the 8B rows, PART=2 the 70B row and the baselines on the same machine (the files stay in /dev/shm).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
if [ "${PART:-1}" = 1 ]; then
  step synth; synth_reference_models > $OUT/synth.log 2>&1
  step 8B Q4_0 x1; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128 -d 0,8192
  step 8B Q4_0 x2 tensor; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -d 0,8192
  step 8B F16 x2 tensor; bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -d 0,8192
else
  step 70B Q4_0 x2 tensor; T=400 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -d 0,8192
  for cache in q8_0 q4_0; do
    step 8B Q4_0 x1, $cache cache; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
    step 8B Q4_0 x2 tensor, $cache cache
    bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192 -ctk $cache -ctv $cache
  done
  bench_baseline "8B Q4_0 x1" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128
  bench_baseline "8B Q4_0 x2 tensor" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
fi
step done; tail -3 $OUT/bench_err.log
