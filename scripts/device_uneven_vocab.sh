#!/usr/bin/env bash
# Two GPUs: an 8B-shaped slice (2 layers, Q4_0) with an odd vocabulary (128255 tokens), so the
# tensor split's vocabulary slices differ in width and the logits gather takes its padded
# path; logits of both split modes against one GPU's (`compare_splits.py`).
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
timeout -k 5 200 $L synth llama3-8b -t q4_0 --set n_layer=2 --set n_vocab=128255 -o $M/8b-2layers-odd-vocab.gguf 2>&1 | tail -1
step compare splits, vocabulary 128255 over 2 GPUs
timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-odd-vocab.gguf --devices cuda:0,cuda:1 --modes tensor,layer --n-prompt 64 --n-decode 16 2>&1 | grep -v "^rank" | tail -6
step done
