#!/usr/bin/env bash
# Two GPUs: kernel time against wall time of a 512-token prompt pass and 8 decode steps under
# tensor split, 8B Q4_0 and 8B F16, and the F16 file on one GPU for comparison.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=150
nvidia-smi --query-gpu=name --format=csv,noheader
step synth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
wait
for run in "8b-q4_0 cuda:0,cuda:1 tensor" "8b-f16 cuda:0,cuda:1 tensor" "8b-f16 cuda:0 none"; do
  set -- $run
  step profile $1 $3 on $2
  timeout -k 5 120 python3 scripts/profile_step.py $M/$1.gguf --devices $2 --mode $3 2>&1 | grep -v Warning | cut -c1-61,110-200 | tee -a $OUT/profile_split.log
done
step done
