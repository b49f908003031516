#!/usr/bin/env bash
# Two GPUs: pp512 at depth 0 and 8192 in one `llamatp bench` call (each test in a context of its
# own, as llama-bench runs them), `-r 5`, this build after the earlier build in .carry/baseline
# (the same run's baseline), for the target rows two GPUs hold.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/70b-q4_0.gguf ] || synth_reference_models > $OUT/synth.log 2>&1
for row in "8B Q4_0 x1|-m $M/8b-q4_0.gguf -dev cuda:0 -sm none" \
           "8B Q4_0 x2 tensor|-m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor" \
           "8B F16 x2 tensor|-m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor" \
           "70B Q4_0 x2 tensor|-m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor"; do
  label=${row%%|*}; args=${row#*|}
  T=300 bench_baseline "$label" $args -p 512 -n 0 -d 0,8192
  step "$label, this build"; T=300 bench_md $args -p 512 -n 0 -d 0,8192
done
step done; tail -3 $OUT/bench_err.log
