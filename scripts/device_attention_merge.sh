#!/usr/bin/env bash
# Four GPUs: decode attention whose last chunk program merges the chunks (short caches), against
# the earlier build in .carry/baseline (`git archive REV llamatp scripts | tar -x -C
# .carry/baseline`, the same run's baseline). The attention kernel's GPU checks and timings
# (scripts/bench_attention.py), logits and greedy tokens of 8B Q4_0 under tensor split against
# one GPU, then `-r 5`: 8B Q4_0 over 2 GPUs (pp512 + tg128, the target row), 70B Q4_0 over 4 and
# 8B Q4_0 on one GPU (tg128 at depth 0 and 8192); last, whether a layer split over 4 GPUs
# still prints torch's warning about serialized sends and receives.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=400 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
step synth, decode attention on GPU 1
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1 &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf >> $OUT/synth.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout -k 5 120 python3 scripts/bench_attention.py 2>&1 | grep -v Warning || exit 1
echo "baseline:"
(cd .carry/baseline && CUDA_VISIBLE_DEVICES=1 PYTHONPATH=/tmp/site:$PWD timeout -k 5 120 python3 scripts/bench_attention.py 2>&1 | grep depth)
wait
step logits against one GPU
timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --modes tensor 2>&1 | grep -v "Warn\|^rank\|warn" | tail -3
X4=cuda:0,cuda:1,cuda:2,cuda:3
step 8B Q4_0 tensor x2; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
bench_baseline "8B Q4_0 tensor x2" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
step 70B Q4_0 tensor x4; T=300 bench_md -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128 -d 0,8192
T=300 bench_baseline "70B Q4_0 tensor x4" -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128 -d 0,8192
step 8B Q4_0 one GPU; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
bench_baseline "8B Q4_0 one GPU" -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192
step layer split x4, stderr; timeout -k 5 120 $L bench -m $M/8b-q4_0.gguf -dev $X4 -sm layer -p 0 -n 16 -r 1 2>$OUT/layer_err.log | tail -1
echo "lines naming unbatched P2P ops: $(grep -c unbatched $OUT/layer_err.log)"
step done
