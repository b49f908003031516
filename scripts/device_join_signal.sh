#!/usr/bin/env bash
# Two GPUs: the tensor-split join whose barrier signals with a reduction that does not wait for
# an answer and waits by reading its flags, against the earlier build in .carry/baseline (`git archive REV
# llamatp scripts | tar -x -C .carry/baseline`): the backend chosen, logits of an 8B-shaped
# slice over 2 GPUs against one, then tg128 of 8B Q4_0 and 8B F16 over 2 GPUs, both builds.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
[ -f $M/8b-f16.gguf ] || $L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
[ -f $M/8b-2layers-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null
step "backend and logits, 8B slice over 2 GPUs"
timeout -k 5 120 $L run -m $M/8b-2layers-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -n 4 -p hello -v 2>&1 | grep -i "all-reduce"
timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor --n-prompt 64 --n-decode 16 2>&1 | grep "rel err"
wait
for m in 8b-q4_0 8b-f16; do
  step "$m over 2 GPUs, tensor"
  bench_md -m $M/$m.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
  bench_baseline "$m over 2 GPUs, tensor" -m $M/$m.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
done
step done; tail -3 $OUT/bench_err.log
