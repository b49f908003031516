#!/usr/bin/env bash
# Four GPUs: the synthetic Llama-3 files of ANCHORS.md, split-mode logits against one GPU,
# the 70B shape on 2 and 4 GPUs, and llama-bench style tables for every target row.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
step synth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null &
wait; ls -la $M
B() { timeout -k 5 ${T:-240} $L bench -r 3 "$@" 2>>$OUT/bench_err.log | grep -v '^build' | tee -a $OUT/bench.md; pkill -9 -f "llamatp bench" 2>/dev/null; }
step logits 8b q4_0, 4 GPUs layer/tensor and 2 GPUs tensor vs one GPU
timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1,cuda:2,cuda:3 --modes layer,tensor > $OUT/cmp4.log 2>&1; grep -v "^rank" $OUT/cmp4.log | tail -6
timeout -k 5 100 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor > $OUT/cmp2.log 2>&1; grep -v "^rank" $OUT/cmp2.log | tail -3
step bench 8b q4_0
B -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128 -o md
B -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm layer,tensor -p 512 -n 128 -o md
B -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer,tensor -p 512 -n 128 -o md
step bench 8b f16
B -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm none,tensor -p 512 -n 128 -o md
step bench 70b q4_0
T=300 B -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -o md
T=300 B -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm layer,tensor -p 512 -n 128 -o md
step depth 8192
B -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128 -d 8192 -o md
T=300 B -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor -p 512 -n 128 -d 8192 -o md
step done; tail -3 $OUT/bench_err.log
