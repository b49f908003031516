#!/usr/bin/env bash
# Decode steps from the long-context depth on run as a second CUDA graph (attention launched during
# the QKV GEMV, more blocks read early). Kernel checks as in long-context steps (CHECKS=0 skips
# them); greedy tokens of an 8B-shaped 2-layer slice, decoding at positions 3000-3015, over two GPUs
# (tensor and layer split) and on one against the CPU (SLICE=0 skips them), with the cache type in SLICE_CACHE (bf16:
# long-context steps); then 8B Q4_0 tg128 for each run in RUNS (GPUs:KV cache type:depths), this
# build against the one in .carry/baseline, in turns.
#   RUNS="2:bf16:0,2048,4096,8192 1:q8_0:0,8192" bash scripts/device_long_context_graph.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=${R:-5} T=200
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] && [ -f $M/8b-2layers-q4_0.gguf ] || synth_8b_and_slice &
if [ "${CHECKS:-1}" = 1 ]; then
  step "kernel checks as in long-context steps: LLAMATP_ATTENTION_OVERLAP=1 LLAMATP_ATTENTION_PRELOAD=4"
  LLAMATP_ATTENTION_OVERLAP=1 LLAMATP_ATTENTION_PRELOAD=4 timeout -k 5 150 python3 scripts/bench_attention.py --shapes 8B,8B/2 2>&1 | grep "^check"
fi
wait
c=${SLICE_CACHE:-bf16}
[ "${SLICE:-1}" = 1 ] && {
step "2-layer slice against the CPU: two GPUs, $c cache"
timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor,layer \
  --base-device cpu --n-ctx 4096 --n-prompt 3000 --n-decode 16 -ctk $c -ctv $c 2>&1 | grep -v "^rank\|Warning"
step "2-layer slice against the CPU: one GPU, $c cache"
timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --modes none \
  --base-device cpu --n-ctx 4096 --n-prompt 3000 --n-decode 16 -ctk $c -ctv $c 2>&1 | grep -v "^rank\|Warning"
}
for run in $RUNS; do
  IFS=: read -r gpus cache depths <<< "$run"
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  args="-m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d $depths -ctk $cache -ctv $cache"
  bench_baseline "$gpus GPU(s), $cache cache" $args
  step "$gpus GPU(s), $cache cache, this build"; bench_md $args
done
step done; tail -3 $OUT/bench_err.log
