#!/usr/bin/env bash
# Two GPUs: 8B Q4_0 on disk, tensor and layer split, loaded with -lm mmap, none and dio (each rank
# reads the rows of its shard): the same greedy text; then bench -o sql of one test.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
D=/var/tmp/models; mkdir -p $D
[ -f $D/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $D/8b-q4_0.gguf 2>/dev/null
for sm in tensor layer; do
  for lm in mmap none dio; do
    step "-sm $sm -lm $lm"
    timeout -k 5 180 $L run -m $D/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm $sm -p "The capital of France is" -n 16 \
      --temp 0 -lm $lm > $OUT/text_${sm}_$lm.txt 2> $OUT/err_${sm}_$lm.txt; echo "rc=$?"
    grep -E "load time|warning|error" $OUT/err_${sm}_$lm.txt
  done
done
for f in $OUT/text_*.txt; do cmp -s $OUT/text_tensor_mmap.txt $f && echo "$(basename $f): the text of tensor mmap" || echo "$(basename $f): other text"; done
step bench -o sql
timeout -k 5 240 $L bench -m $D/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 32 -r 2 -lm none -o sql 2>/dev/null | tail -2 | cut -c1-400
step done
