#!/usr/bin/env bash
# Four GPUs: where a decode step's time goes under tensor split near depth 0: kernel times of
# rank 0 over 32 steps after a 16-token prompt, in a 640-position cache
# (scripts/profile_step.py, LLAMATP_PDL=0: each kernel's own time, where by default each
# overlaps the one before), beside the wall time of the same steps without the profiler;
# 8B Q4_0 over 2 GPUs and 70B Q4_0 over 4.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=200
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1 &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf >> $OUT/synth.log 2>&1 &
wait
for run in "8b-q4_0 cuda:0,cuda:1" "70b-q4_0 cuda:0,cuda:1,cuda:2,cuda:3"; do
  set -- $run
  step "profile $1 tensor over $2, LLAMATP_PDL=0"
  LLAMATP_PDL=0 timeout -k 5 150 python3 scripts/profile_step.py $M/$1.gguf --devices $2 --mode tensor --n-prompt 16 \
    --n-decode 32 --ctx 640 2>&1 | grep -v "Warning\|warn" | sed -n '/--- decode/,$p' | cut -c1-61,110-200
done
step done
