#!/usr/bin/env bash
# One GPU: a tiling sweep written into gemv.py (`bench_gemv.py --sweep --apply`), kernel
# timings, CUDA-vs-CPU logits on an 8B-shaped slice, the 8B Q4_0 benchmark and a decode
# profile. Run from the repository root on the GPU machine; $OUT collects the logs and the
# tuned gemv.py. With an earlier build in .carry/baseline (see bench_baseline in
# device_env.sh), the benchmark runs it too, on the same machine, as the baseline.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step synth, sweep
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null &
timeout -k 5 240 python3 scripts/bench_gemv.py --sweep --apply --out $OUT/sweep.json > $OUT/sweep.log 2>&1; tail -28 $OUT/sweep.log
cp llamatp/quant/gemv.py $OUT/gemv_tuned.py
wait
step gemv kernels; timeout -k 5 150 python3 scripts/bench_gemv.py --types Q4_0,Q8_0,Q4_K,Q6_K --out $OUT/gemv.json > $OUT/gemv.log 2>&1; tail -45 $OUT/gemv.log
step cuda vs cpu logits; timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 > $OUT/cmp.log 2>&1; grep -v "^rank" $OUT/cmp.log | tail -4
step bench 8b q4_0; bench_md -m $M/8b-q4_0.gguf -p 512 -n 128
bench_baseline "bench 8b q4_0" -m $M/8b-q4_0.gguf -p 512 -n 128
step profile; timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none > $OUT/profile.log 2>&1; grep -v Warning $OUT/profile.log | tail -40
step done; tail -3 $OUT/bench_err.log
