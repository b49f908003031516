#!/usr/bin/env bash
# Four GPUs, first part: the dequantization tilings of the K-quants swept on GPU 0, the
# synthetic Llama-3 files of ANCHORS.md, split-mode logits on 4 and 2 GPUs against one (and
# each rank's prompt graph replayed against its eager pass), and the 8B rows (Q4_0 on 1, 2
# and 4 GPUs, F16 on 1 and 2), `-r 5`; the tensor-split prompts also with prompt graphs off.
# With a copy of an earlier package in .carry/baseline, the one-GPU 8B Q4_0 row runs it too.
# scripts/device_4gpu_70b.sh is the second part (same machine: it reuses the files).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
copy_bandwidth
step synth, dequantization sweep
synth_reference_models > $OUT/synth.log 2>&1 &
timeout -k 5 120 python3 scripts/bench_gemv.py --sweep --dequant-only --types Q4_K,Q6_K --apply --out $OUT/dequant_sweep.json 2>&1 | grep "^dequant\|written"
cp llamatp/quant/gemv.py $OUT/gemv_tuned.py
wait; cat $OUT/synth.log
step logits 8b q4_0, 4 GPUs layer/tensor and 2 GPUs tensor vs one GPU
timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1,cuda:2,cuda:3 --modes layer,tensor > $OUT/cmp4.log 2>&1; grep -v Warn $OUT/cmp4.log | tail -16
timeout -k 5 100 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor > $OUT/cmp2.log 2>&1; grep -v Warn $OUT/cmp2.log | tail -8
step bench 8b q4_0
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128
bench_baseline "bench 8b q4_0" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm layer,tensor -p 512 -n 128
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer,tensor -p 512 -n 128
step bench 8b f16
bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 512 -n 128
step tensor-split prompts, prompt graphs off
LLAMATP_PROMPT_GRAPHS=0 bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 0
LLAMATP_PROMPT_GRAPHS=0 bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 0
step done; tail -3 $OUT/bench_err.log
