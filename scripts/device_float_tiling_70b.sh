#!/usr/bin/env bash
# Four GPUs: 70B Q4_0 tg128 at depth 0 and 8192 (default bf16 cache), tensor and layer split,
# for the float attention tilings in TILINGS (LLAMATP_FLOAT_TILING, as device_float_tiling.sh).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=3
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth 70B Q4_0
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null
for tiling in ${TILINGS:-64,1,4,3,0 32,2,4,3,0}; do
  for split in tensor layer; do
    step "70B Q4_0 $split x4, float tiling $tiling"
    LLAMATP_FLOAT_TILING=$tiling T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm $split \
      -p 0 -n 128 -d 0,8192
  done
done
step done; tail -3 $OUT/bench_err.log
