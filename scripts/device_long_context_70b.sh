#!/usr/bin/env bash
# 70B Q4_0 tg128 at depth 0 and 8192, `-r 5`, over two GPUs (tensor split) and four (tensor and
# layer split): this build, whose steps from the long-context depth on replay a second CUDA
# graph, against the one in .carry/baseline, in turns. Reuses /dev/shm's model where it is there.
# RUNS picks the rows (devices:split), e.g. the four-GPU ones alone:
#   RUNS="cuda:0,cuda:1,cuda:2,cuda:3:tensor cuda:0,cuda:1,cuda:2,cuda:3:layer" bash scripts/device_long_context_70b.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5 T=300
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
synth_70b_if_missing
for run in ${RUNS:-cuda:0,cuda:1:tensor cuda:0,cuda:1,cuda:2,cuda:3:tensor cuda:0,cuda:1,cuda:2,cuda:3:layer}; do
  devices=${run%:*} split=${run##*:}
  args="-m $M/70b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d 0,8192"
  bench_baseline "70B Q4_0, $devices, $split" $args
  step "70B Q4_0, $devices, $split, this build"; bench_md $args
done
step done; tail -3 $OUT/bench_err.log
