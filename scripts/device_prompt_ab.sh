#!/usr/bin/env bash
# One GPU: the dequantization tilings swept and written into gemv.py, CUDA-vs-CPU logits on
# an 8B-shaped slice (with a prompt graph replayed), then the 8B Q4_0 prompt (pp512) and
# decode (tg128): this tree against the earlier build in .carry/baseline, alternating twice,
# and this tree with prompt graphs off; last, the wall time of one 512-token pass, eager and replayed.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null &
step dequantization sweep
timeout -k 5 150 python3 scripts/bench_gemv.py --sweep --dequant-only --apply --out $OUT/dequant_sweep.json 2>&1 | tail -12
cp llamatp/quant/gemv.py $OUT/gemv_tuned.py
wait
step cuda vs cpu logits
timeout -k 5 120 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 2>&1 | grep -v "^rank 0 (cpu" | tail -4
for i in 1 2; do
  step "this tree ($i)"; bench_md -m $M/8b-q4_0.gguf -p 512 -n 128
  bench_baseline "($i)" -m $M/8b-q4_0.gguf -p 512 -n 128
done
step "this tree, prompt graphs off"; LLAMATP_PROMPT_GRAPHS=0 bench_md -m $M/8b-q4_0.gguf -p 512 -n 0
for flag in "" --repeated; do
  step "profile of a prompt pass $flag"
  timeout -k 5 90 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none --n-decode 1 $flag 2>&1 | grep -v Warning | sed -n '/--- prompt/,/--- decode/p' | cut -c1-61,110-200 | head -12
done
step done; tail -3 $OUT/bench_err.log
