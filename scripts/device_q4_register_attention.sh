#!/usr/bin/env bash
# One GPU: q4_0 attention with the codes converted in the tensor cores' registers (`q4_attention`)
# against the Triton kernel (LLAMATP_Q4_ATTENTION=triton), kernel alone and in the 8B model.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
step tests on the GPU
TRITON_INTERPRET=0 timeout -k 5 240 python3 -m pytest -q -p no:cacheprovider tests/test_q4_attention.py 2>&1 | grep -v '^ \|nanobind\|leaked' | tail -15
step kernel: register operands against a plain read
timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0
step kernel: the Triton kernel against a plain read
LLAMATP_Q4_ATTENTION=triton timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0 | grep -v '^check'
step kernel: programs per multiprocessor
timeout -k 5 200 python3 scripts/bench_attention.py --types q4_0 --sweep \
  --grid block_n=32 programs_per_sm=1,2,3 num_warps=4 num_stages=1 register_operands=1 | grep '^sweep'
wait
step model: 8B Q4_0, q4_0 cache, Triton kernel
LLAMATP_Q4_ATTENTION=triton R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
step model: 8B Q4_0, q4_0 cache, register operands
R=5 bench_md -m $M/8b-q4_0.gguf -dev cuda:0 -sm none -p 0 -n 128 -d 0,8192 -ctk q4_0 -ctv q4_0
step done
