#!/usr/bin/env bash
# Two GPUs: split-mode logits against one GPU, a streamed run, and 8B benchmarks of every mode.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; M=/tmp/models; mkdir -p "$M" "$OUT"
L="python3 -m llamatp"
step() { echo; echo "=== $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nvidia-smi topo -m | head -4
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-q4_0.gguf 2>/dev/null
step split logits vs one GPU
timeout 200 python3 scripts/compare_splits.py $M/8b-q4_0.gguf --devices cuda:0,cuda:1 --modes layer,tensor --n-prompt 64 --n-decode 16 2>&1 | grep -v "^rank"
step run -sm tensor
timeout 100 $L run -m $M/8b-q4_0.gguf -p "Hello" -n 16 --temp 0 -sm tensor -dev CUDA0,CUDA1 --verbose 2>&1 | tail -12
step bench 8b q4_0 on 2 GPUs
timeout 240 $L bench -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm none,layer,tensor -p 512 -n 128 -r 3 2>$OUT/bench_err.log | tee $OUT/bench_8b_2gpu.md; tail -3 $OUT/bench_err.log
step tensor with NCCL all-reduce only
LLAMATP_ALLREDUCE=nccl timeout 120 $L bench -m $M/8b-q4_0.gguf -dev cuda:0,cuda:1 -sm tensor -p 512 -n 128 -r 3 2>>$OUT/bench_err.log | tee $OUT/bench_8b_2gpu_nccl.md
