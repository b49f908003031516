#!/usr/bin/env bash
# One GPU: the dequantization tilings swept and written into gemv.py, then the 8B Q4_0 prompt
# (pp512), this tree against the earlier build in .carry/baseline, alternating twice, and a
# profile of one 512-token pass of each.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
step dequantization sweep
timeout -k 5 150 python3 scripts/bench_gemv.py --sweep --dequant-only --apply --out $OUT/dequant_sweep.json 2>&1 | tail -12
cp llamatp/quant/gemv.py $OUT/gemv_tuned.py
wait
for i in 1 2; do
  step "pp512, this tree ($i)"; bench_md -m $M/8b-q4_0.gguf -p 512 -n 0
  bench_baseline "pp512 ($i)" -m $M/8b-q4_0.gguf -p 512 -n 0
done
step profile, this tree
timeout -k 5 90 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none --n-decode 1 2>&1 | grep -v Warning | sed -n '/--- prompt/,/--- decode/p' | cut -c1-61,110-200
step profile, baseline package
(cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD timeout -k 5 90 python3 ../../scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none --n-decode 1 2>&1 | grep -v Warning | sed -n '/--- prompt/,/--- decode/p' | cut -c1-61,110-200)
step done
