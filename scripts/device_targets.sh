#!/usr/bin/env bash
# Four GPUs: every row of the speed targets (8B Q4_0 on 1 and 2 GPUs, 8B F16 on 2, 70B Q4_0 on
# 2 and 4, tensor and layer), then the 8B rows' tg at depth 0 and 8192 (1 GPU with the default
# and the q8_0 cache, 2 GPUs under tensor split), `-r 5`; the bf16 GEMV tilings timed on this
# card first, the decode attention kernel timed (scripts/bench_attention.py), and the depth rows
# and the attention timings also with the earlier build in .carry/baseline (`git archive
# REV llamatp scripts | tar -x -C .carry/baseline`, the same run's baseline). The 70B depth row
# is scripts/device_4gpu_depth.sh, run next on the same machine (the models stay in /dev/shm).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth, the bf16 GEMV tilings on GPU 0, decode attention on GPU 1 with this build and the baseline
synth_reference_models > $OUT/synth.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 timeout -k 5 120 python3 scripts/bench_attention.py > $OUT/attention.log 2>&1
 [ -d .carry/baseline/scripts ] && (cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD timeout -k 5 120 \
   python3 scripts/bench_attention.py > $OUT/attention_baseline.log 2>&1)) &
timeout -k 5 120 python3 scripts/bench_gemv.py --sweep --dense-only 2>&1 | grep -v Warning
wait; grep -h "depth\|copy" $OUT/attention.log; echo "baseline:"; grep -h "depth" $OUT/attention_baseline.log
step targets
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 512 -n 128
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
bench_md -m $M/8b-f16.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
T=300 bench_md -m $M/70b-q4_0.gguf -dev cuda:0,cuda:1,cuda:2,cuda:3 -sm tensor,layer -p 512 -n 128
step depth 8192, 8B
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
bench_baseline "8B one GPU, depth 0 and 8192" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_baseline "8B one GPU, q8_0 cache" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q8_0 -ctv q8_0
bench_baseline "8B two GPUs, depth 0 and 8192" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128 -d 0,8192
step done; tail -3 $OUT/bench_err.log
