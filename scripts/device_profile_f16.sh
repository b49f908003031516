#!/usr/bin/env bash
# Two GPUs, part 2 (after device_cache_types.sh, on the same machine): 8B F16 tg128 under tensor
# split with the earlier build in .carry/baseline and with this one (the bf16 GEMV tiling the
# sweep chose), `-r 5`; then where a decode step's time goes, per kernel, on rank 0.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
grep -n "^DENSE_TILING" llamatp/dense_gemv.py .carry/baseline/llamatp/dense_gemv.py
bench_baseline "8B F16 tensor x2" -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
step "8B F16 tensor x2, this build"; bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
step profile 8B F16 tensor x2
timeout -k 5 150 python3 scripts/profile_step.py $M/8b-f16.gguf --devices cuda:0,cuda:1 --mode tensor --ctx 128 \
  --n-prompt 16 --n-decode 64 2>&1 | grep -v Warning | cut -c1-61,110-200 | sed -n '/--- decode/,$p' | tee $OUT/profile_f16.log
step done
