#!/usr/bin/env bash
# Two GPUs: where a decode step's time goes under tensor split, 8B Q4_0 near depth 0: kernel
# times of rank 0 over 32 steps after a 16-token prompt, in a 640-position cache
# (scripts/profile_step.py), with the kernels launched early
# (the default; their times then overlap the kernel before) and with LLAMATP_PDL=0 (each
# kernel's own time), beside the wall time of the same steps without the profiler.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=150
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1
for pdl in 1 0; do
  step "profile 8B Q4_0 tensor x2, LLAMATP_PDL=$pdl"
  LLAMATP_PDL=$pdl timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --mode tensor --n-prompt 16 --n-decode 32 --ctx 640 \
    2>&1 | grep -v "Warning\|warn" | sed -n '/--- decode/,$p' | cut -c1-61,110-200
done
step done
