#!/usr/bin/env bash
# What each decode kernel adds to a step (profile_step.py --critical-path), 8B Q4_0, rank 0, for
# each run in RUNS (GPUs:context:prompt:cache:overlap; two GPUs tensor split; overlap "-" leaves
# LLAMATP_ATTENTION_OVERLAP unset, so steps from the long-context depth replay the second graph).
#   RUNS="1:256:16:bf16:- 1:8320:8192:bf16:- 1:8320:8192:bf16:0" bash scripts/device_profile_critical_path.sh
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
for run in ${RUNS:-1:256:16:bf16:- 1:8320:8192:bf16:- 1:8320:8192:bf16:0}; do
  IFS=: read -r gpus ctx prompt cache overlap <<< "$run"
  devices=cuda:0 mode=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 mode=tensor
  name=profile-$gpus-$ctx-$prompt-$cache-$overlap
  step "$gpus GPU(s), context $ctx, decode at $prompt, $cache cache, LLAMATP_ATTENTION_OVERLAP=$overlap"
  ( [ "$overlap" = - ] || export LLAMATP_ATTENTION_OVERLAP=$overlap
    timeout -k 5 200 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices $devices --mode $mode --ctx $ctx \
      --n-prompt $prompt --n-decode 16 --cache-type $cache --critical-path > $OUT/$name.txt 2>&1 )
  grep -A1 "^--- decode" $OUT/$name.txt | head -2
  sed -n '/kernel (critical path)/,/^total/p' $OUT/$name.txt | cut -c1-40,72-
done
step done
