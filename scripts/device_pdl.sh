#!/usr/bin/env bash
# One GPU: CUDA-vs-CPU logits on an 8B-shaped slice, then the 8B Q4_0 benchmark at depth 0 and
# 8192 with programmatic dependent launch on (the default) and off (LLAMATP_PDL=0), the
# earlier build in .carry/baseline as the same run's baseline (with WITH_BASELINE=1), and a
# decode profile.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
step synth
synth_8b_and_slice
step cuda vs cpu logits; timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 > $OUT/cmp.log 2>&1; grep -v "^rank" $OUT/cmp.log | tail -4
step bench 8b q4_0, early launch; bench_md -m $M/8b-q4_0.gguf -p 512 -n 128 -d 0,8192
step bench 8b q4_0, LLAMATP_PDL=0; LLAMATP_PDL=0 bench_md -m $M/8b-q4_0.gguf -p 512 -n 128
[ -n "${WITH_BASELINE:-}" ] && bench_baseline "bench 8b q4_0" -m $M/8b-q4_0.gguf -p 512 -n 128 -d 0,8192
step profile; timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none > $OUT/profile.log 2>&1; grep -v Warning $OUT/profile.log | sed -n '/--- decode/,$p' | head -16
step done; tail -3 $OUT/bench_err.log
