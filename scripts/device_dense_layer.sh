#!/usr/bin/env bash
# Four GPUs: the bf16 GEMV tiling swept (and written into dense_gemv.py) against cuBLAS, CUDA-vs-CPU
# logits of an 8B-shaped F16 slice and layer-split logits on 4 GPUs, then the F16 8B rows (1 and 2
# GPUs) and the layer-split Q4_0 rows (8B on 2 and 4 GPUs, 70B on 4), `-r 5`; the F16 tensor row
# and the 70B layer row also with the earlier build in .carry/baseline, the same run's baseline.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth, bf16 GEMV sweep
synth_reference_models > $OUT/synth.log 2>&1 &
$L synth llama3-8b -t f16 --set n_layer=2 --vocab $V -o $M/8b-2layers-f16.gguf 2>/dev/null &
timeout -k 5 150 python3 scripts/bench_gemv.py --sweep --dense-only --apply 2>&1 | grep "dense\|DENSE\|written"
cp llamatp/dense_gemv.py $OUT/dense_gemv_tuned.py
wait
step logits: F16 slice cuda vs cpu, 8B Q4_0 layer x4 vs one GPU
timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-f16.gguf --devices cuda:0,cuda:1 --base-device cpu --modes none,tensor --n-prompt 64 --n-decode 8 2>&1 | grep -v "^rank\|Warn" | tail -4
timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1,cuda:2,cuda:3 --modes layer 2>&1 | grep -v "^rank\|Warn" | tail -3
step bench 8b f16
bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 512 -n 128
bench_baseline "bench 8b f16" -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 0 -n 128
step bench layer split
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm layer -p 512 -n 0
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer -p 512 -n 0
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer -p 512 -n 128
T=300 bench_baseline "70b layer" -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer -p 512 -n 0
step done; tail -3 $OUT/bench_err.log
