#!/usr/bin/env bash
# Caches of codes in long-context steps from where each chunk holds more than one block (8B on
# one GPU: position 4224): greedy tokens of an 8B-shaped 2-layer slice decoding at positions
# 4300-4315 on GPU 0 against the CPU over a q8_0 cache, then 8B Q4_0 tg128 on GPU 0 for each
# cache in CACHES, at depths around that position, with LLAMATP_ATTENTION_OVERLAP=0 (one launch
# for every step, as before: "off" in TURNS) and without ("on"), in turns. SLICE=0 skips the slice.
#   CACHES="q8_0 q4_0" TURNS="on off on" DEPTHS=0,8192 SLICE=0 bash scripts/device_long_context_codes.sh
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=${R:-3} T=200
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] && [ -f $M/8b-2layers-q4_0.gguf ] || synth_8b_and_slice
[ "${SLICE:-1}" = 1 ] && {
step "2-layer slice against the CPU: one GPU, q8_0 cache, positions 4300-4315"
timeout -k 5 300 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --modes none \
  --base-device cpu --n-ctx 8192 --n-prompt 4300 --n-decode 16 -ctk q8_0 -ctv q8_0 2>&1 | grep -v "^rank\|Warning"
}
for cache in ${CACHES:-q8_0 q4_0}; do
  args="-m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d ${DEPTHS:-0,4096,5000,6000,7000,8192} -ctk $cache -ctv $cache"
  for turn in ${TURNS:-off on}; do
    if [ $turn = off ]; then step "$cache cache, LLAMATP_ATTENTION_OVERLAP=0"; LLAMATP_ATTENTION_OVERLAP=0 bench_md $args
    else step "$cache cache, long-context steps as the model sets them"; bench_md $args; fi
  done
done
step done; tail -3 $OUT/bench_err.log
