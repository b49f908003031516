#!/usr/bin/env bash
# One GPU: 8B Q4_0, written to disk, loaded with each load mode (-lm): the same greedy text, and
# each run's load time (mmap first, with the file still in the page cache from its writing).
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
D=/var/tmp/models; mkdir -p $D
step synth on disk
$L synth llama3-8b -t q4_0 --vocab $V -o $D/8b-q4_0.gguf 2>/dev/null; ls -la $D; df -T $D | tail -1
for lm in mmap none dio mlock; do
  step "-lm $lm"
  timeout -k 5 180 $L run -m $D/8b-q4_0.gguf -dev cuda:0 -sm none -p "The capital of France is" -n 16 --temp 0 \
    -lm $lm > $OUT/text_$lm.txt 2> $OUT/err_$lm.txt; echo "rc=$?"
  grep -E "load time|warning|error" $OUT/err_$lm.txt
done
for lm in none dio mlock; do cmp -s $OUT/text_mmap.txt $OUT/text_$lm.txt && echo "-lm $lm: the text of -lm mmap" || echo "-lm $lm: other text"; done
step done
