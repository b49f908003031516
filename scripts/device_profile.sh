#!/usr/bin/env bash
# Kernel time of a 512-token prompt pass and 8 decode steps, 8B Q4_0, one GPU and tensor split on two.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=150
[ -f $M/8b-q4_0.gguf ] || python3 -m llamatp synth llama3-8b -t q4_0 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-q4_0.gguf 2>/dev/null
timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none 2>&1 | grep -v Warning
timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --mode tensor 2>&1 | grep -v Warning
