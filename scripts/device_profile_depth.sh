#!/usr/bin/env bash
# Two GPUs: where a decode step's time goes at depth 8192, 8B Q4_0: kernel times of rank 0
# over 32 steps after an 8192-token prompt, in an 8320-position cache (scripts/profile_step.py,
# LLAMATP_PDL=0: each kernel's own time), on one GPU with the default and the q8_0 cache and
# over 2 GPUs under tensor split, beside the wall time of the same steps without the profiler;
# then the decode attention kernel alone (scripts/bench_attention.py).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=150
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1
profile() {  # label, then profile_step.py arguments
  step "profile $1, depth 8192, LLAMATP_PDL=0"; shift
  LLAMATP_PDL=0 timeout -k 5 150 python3 scripts/profile_step.py $M/8b-q4_0.gguf --n-prompt 8192 --n-decode 32 \
    --ctx 8320 "$@" 2>&1 | grep -v "Warning\|warn" | sed -n '/--- decode/,$p' | cut -c1-61,110-200
}
profile "8B Q4_0 x1" --devices cuda:0 --mode none
profile "8B Q4_0 x1, q8_0 cache" --devices cuda:0 --mode none --cache-type q8_0
profile "8B Q4_0 tensor x2" --devices cuda:0,cuda:1 --mode tensor
step attention kernel
timeout -k 5 120 python3 scripts/bench_attention.py 2>&1 | grep -v "Warn\|warn"
step done
