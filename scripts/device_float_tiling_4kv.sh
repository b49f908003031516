#!/usr/bin/env bash
# The target rows whose GPUs hold 4 KV heads each over a bf16 cache, 8B F16 and 70B Q4_0 tensor
# split over two GPUs: tg128 at depth 0 and 8192 with the float tiling chosen for 4 or more KV
# heads (`kernels.FLOAT_TILING_MANY_HEADS`) and with the earlier one (64,1,4,3,0), in the same run.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=${R:-3}
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null &
wait
for tiling in default 64,1,4,3,0; do
  [ "$tiling" = default ] && unset LLAMATP_ATTENTION_TILING || export LLAMATP_ATTENTION_TILING=$tiling
  step "8B F16 tensor x2, tiling $tiling"
  T=150 bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
  step "70B Q4_0 tensor x2, tiling $tiling"
  T=240 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
done
unset LLAMATP_ATTENTION_TILING
step done; tail -3 $OUT/bench_err.log
