#!/usr/bin/env bash
# Decode attention that rotates and stores the query's key itself (`kernels.rope_in_attention`),
# one kernel fewer a layer. Kernel checks (the fused kernel against RoPE then attention); greedy
# tokens of an 8B-shaped 2-layer slice decoding at positions 3000-3015 with LLAMATP_ATTENTION_ROPE=1,
# on GPU 0 against the CPU (bf16 and q8_0 caches) and over two GPUs (tensor and layer split; SLICE=0
# skips them); then 8B Q4_0 tg128 for each run in RUNS (GPUs:KV cache type:depths), in the turns
# of TURNS: LLAMATP_ATTENTION_ROPE=0 (RoPE's own kernel in every step), "default" (the model's
# setting: fused in long-context steps) and 1 (fused in every step).
#   RUNS="1:bf16:0,8192 2:bf16:0,8192" TURNS="0 default 1 0" bash scripts/device_rope_in_attention.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=${R:-5} T=200
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
[ -f $M/8b-q4_0.gguf ] && [ -f $M/8b-2layers-q4_0.gguf ] || synth_8b_and_slice &
if [ "${CHECKS:-1}" = 1 ]; then
  step "kernel checks"
  timeout -k 5 200 python3 scripts/bench_attention.py --check 2>&1 | grep "^check\|Error\|differ"
fi
wait
[ "${SLICE:-1}" = 1 ] && {
for c in bf16 q8_0; do
  step "2-layer slice against the CPU: one GPU, $c cache, LLAMATP_ATTENTION_ROPE=1"
  LLAMATP_ATTENTION_ROPE=1 timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 \
    --modes none --base-device cpu --n-ctx 4096 --n-prompt 3000 --n-decode 16 -ctk $c -ctv $c 2>&1 | grep -v "^rank\|Warning"
done
step "2-layer slice: two GPUs against one, bf16 cache, LLAMATP_ATTENTION_ROPE=1"
LLAMATP_ATTENTION_ROPE=1 timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0,cuda:1 \
  --modes tensor,layer --n-ctx 4096 --n-prompt 3000 --n-decode 16 2>&1 | grep -v "^rank\|Warning"
}
for run in $RUNS; do
  IFS=: read -r gpus cache depths <<< "$run"
  devices=cuda:0 split=none
  [ "$gpus" = 2 ] && devices=cuda:0,cuda:1 split=tensor
  args="-m $M/8b-q4_0.gguf -dev $devices -sm $split -p 0 -n 128 -d $depths -ctk $cache -ctv $cache"
  for turn in ${TURNS:-0 default 1 0}; do
    if [ $turn = default ]; then step "$gpus GPU(s), $cache cache, the model's setting"; bench_md $args
    else step "$gpus GPU(s), $cache cache, LLAMATP_ATTENTION_ROPE=$turn"; LLAMATP_ATTENTION_ROPE=$turn bench_md $args; fi
  done
done
step done; tail -3 $OUT/bench_err.log
