#!/usr/bin/env bash
# Four GPUs: a decode step's boundary without its small kernels (the embedding looked up by
# one kernel and, under tensor split, summed by the first norm; RoPE angles computed in the
# RoPE kernel; the logits gathered by one collective), this build against the earlier build
# in .carry/baseline (`git archive REV llamatp scripts | tar -x -C .carry/baseline`):
# - GPU checks: `gather_rows` against `dequantize_packed` for every GEMV type, and the
#   attention script's checks (RoPE at positions near 2^17 against torch);
# - logits and greedy tokens of 8B Q4_0 over 4 GPUs (tensor, layer) against one GPU;
# - tg128 `-r 5` of 8B Q4_0 on one GPU and over 2 (tensor), and 70B Q4_0 over 4 (tensor),
#   this build (with pp512) then the baseline;
# - kernel times of an 8B tensor x2 decode step, each kernel on its own (LLAMATP_PDL=0).
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=300 R=5
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
copy_bandwidth
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf > $OUT/synth.log 2>&1 &
$L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf >> $OUT/synth.log 2>&1 &
step gather_rows against dequantize_packed
CUDA_VISIBLE_DEVICES=3 timeout -k 5 120 python3 - <<'PY' 2>&1 | grep -v "Warn\|warn"
import sys
sys.path.insert(0, "scripts")
import torch
from bench_gemv import random_gguf
from gguf.constants import GGMLQuantizationType as Q
from llamatp.quant.gemv import dequantize_packed, gather_rows, repack
for name in ("q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q5_k", "q6_k"):
    rows, cols = 1000, 4096
    packed = repack(random_gguf(name.upper(), rows, cols), Q[name.upper()], rows, cols)
    ids = torch.tensor([7, 999, 1000, 500, -1, 0], device="cuda")
    first = 3
    out = gather_rows(packed, ids, first, 2.0, torch.float32)
    dense = dequantize_packed(packed, torch.float32)
    held = (ids - first >= 0) & (ids - first < rows)
    ref = torch.where(held[:, None], dense[(ids - first).clamp(0, rows - 1)] * 2.0, 0.0)
    err = float((out - ref).abs().max())
    print(f"gather_rows {name}: max |diff| {err:.3g}")
    if err > 0:
        raise SystemExit(f"gather_rows {name} differs from dequantize_packed")
PY
step attention and RoPE checks, attention timings
CUDA_VISIBLE_DEVICES=3 timeout -k 5 150 python3 scripts/bench_attention.py 2>&1 | grep -v "Warn\|warn"
wait
step logits against one GPU
timeout -k 5 150 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1,cuda:2,cuda:3 --modes tensor,layer 2>&1 | grep -v "Warn\|^rank\|warn" | tail -3
step 8B Q4_0 tensor x2; bench_md -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128
bench_baseline "8B Q4_0 tensor x2" -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 0 -n 128
X4=cuda:0,cuda:1,cuda:2,cuda:3
step 70B Q4_0 tensor x4; T=150 bench_md -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 512 -n 128
T=150 bench_baseline "70B Q4_0 tensor x4" -m $M/70b-q4_0.gguf -dev $X4 -sm tensor -p 0 -n 128
step 8B Q4_0 x1; bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -p 512 -n 128
bench_baseline "8B Q4_0 x1" -m $M/8b-q4_0.gguf -dev cuda:0 -p 0 -n 128
step profile 8B Q4_0 tensor x2, LLAMATP_PDL=0
LLAMATP_PDL=0 timeout -k 5 120 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --mode tensor --n-prompt 16 --n-decode 32 --ctx 640 \
  2>&1 | grep -v "Warning\|warn" | sed -n '/--- decode/,$p' | cut -c1-61,110-200
step done
