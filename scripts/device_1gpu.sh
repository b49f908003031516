#!/usr/bin/env bash
# One GPU: kernel check and timing, CUDA-vs-CPU logits on an 8B-shaped slice, 8B benchmarks.
# Run from the repository root on the GPU machine; $OUT collects the logs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; M=/tmp/models; mkdir -p "$M" "$OUT"
L="python3 -m llamatp"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'gpus', torch.cuda.device_count())"
step() { echo; echo "=== $*"; }
step synth; $L synth llama3-8b -t q4_0 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-q4_0.gguf 2>/dev/null
$L synth llama3-8b -t q4_0 --set n_layer=2 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-2layers-q4_0.gguf 2>/dev/null
ls -la $M
step gemv kernels; timeout 240 python3 scripts/bench_gemv.py --out $OUT/gemv.json 2>&1 | tail -40
step cuda vs cpu logits; timeout 240 python3 scripts/compare_splits.py $M/8b-2layers-q4_0.gguf --devices cuda:0 --base-device cpu --modes none --n-prompt 64 --n-decode 8 2>&1 | tail -5
step bench 8b q4_0; timeout 300 $L bench -m $M/8b-q4_0.gguf -p 512 -n 128 -r 3 -o md 2>$OUT/bench_err.log | tee $OUT/bench_8b_q4_0.md; tail -5 $OUT/bench_err.log
