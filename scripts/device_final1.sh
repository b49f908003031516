#!/usr/bin/env bash
# One GPU, the final build: 8B Q4_0 and F16, pp512 and tg128, each file in a bench group of its own.
set -uo pipefail
source scripts/device_env.sh
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
wait
for f in 8b-q4_0 8b-f16; do
  timeout -k 5 60 $L bench -r 3 -o md -m $M/$f.gguf -p 512 -n 128 2>>$OUT/err.log | grep -v '^build' | tee -a $OUT/bench.md
done
