#!/usr/bin/env bash
# What each decode kernel adds to a step (profile_step.py --critical-path), 8B Q4_0 with a bf16
# cache, with the attention launched during the QKV GEMV and its chunks read early or not, for
# each run in RUNS (GPUs:context:prompt:overlap:blocks; two GPUs tensor split; rank 0).
#   RUNS="1:256:16:0:0 1:256:16:1:0" bash scripts/device_overlap_profile.sh
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
for run in ${RUNS:-1:256:16:0:0 1:256:16:1:0}; do
  IFS=: read -r gpus ctx prompt overlap blocks <<< "$run"
  devices=cuda:0 mode=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 mode=tensor
  step "$gpus GPU(s), context $ctx, decode at $prompt, LLAMATP_ATTENTION_OVERLAP=$overlap LLAMATP_ATTENTION_PRELOAD=$blocks"
  LLAMATP_ATTENTION_OVERLAP=$overlap LLAMATP_ATTENTION_PRELOAD=$blocks timeout -k 5 150 python3 scripts/profile_step.py \
    $M/8b-q4_0.gguf --devices $devices --mode $mode --ctx $ctx --n-prompt $prompt --n-decode 16 --critical-path \
    > $OUT/profile-$gpus-$ctx-$overlap-$blocks.txt 2>&1
  grep -A1 "^--- decode" $OUT/profile-$gpus-$ctx-$overlap-$blocks.txt | head -1
  sed -n '/kernel (critical path)/,/^total/p' $OUT/profile-$gpus-$ctx-$overlap-$blocks.txt | cut -c1-40,72-
done
step done
