#!/usr/bin/env bash
# Two GPUs: 8B Q4_0 tg128 at depth 0 and 8192 with the default bf16 cache, for tilings of the
# float attention kernel (LLAMATP_FLOAT_TILING=block_n,programs_per_sm,num_warps,num_stages,keys_major),
# on one GPU and tensor split over two: does a tiling with less shared memory lose less at depth
# in the model, where kernels launch early?
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=3 T=120
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_8b_and_slice
for tiling in ${TILINGS:-64,1,4,3,0 64,1,4,2,0 32,2,4,3,0 64,1,4,1,0 64,2,4,2,0 128,1,4,2,0 64,1,4,3,0}; do
  step "one GPU, float tiling $tiling"
  LLAMATP_FLOAT_TILING=$tiling bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
  step "two GPUs tensor, float tiling $tiling"
  LLAMATP_FLOAT_TILING=$tiling bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
done
step done; tail -3 $OUT/bench_err.log
