#!/usr/bin/env bash
# Two GPUs, small synthetic model: every split path once, each under a watchdog that prints
# all stacks if it hangs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD LLAMATP_WATCHDOG=75 NCCL_DEBUG=WARN
OUT=${OUT:-/tmp/out}; M=/tmp/models; mkdir -p "$M" "$OUT"
L="python3 -m llamatp"
$L synth llama3-8b -t q4_0 --set n_layer=4 --vocab .carry/ggml-vocab-llama-bpe.gguf -o $M/8b-4l.gguf 2>/dev/null
for modes in tensor layer; do
  echo "=== compare $modes"
  timeout -k 5 90 python3 scripts/compare_splits.py $M/8b-4l.gguf --devices cuda:0,cuda:1 --modes $modes --n-prompt 64 --n-decode 8 > $OUT/cmp_$modes.log 2>&1
  echo "rc=$?"; tail -30 $OUT/cmp_$modes.log; pkill -9 -f compare_splits; sleep 1
done
echo "=== run tensor"
timeout -k 5 60 $L run -m $M/8b-4l.gguf -p "Hello" -n 8 --temp 0 -sm tensor -dev CUDA0,CUDA1 --verbose > $OUT/run.log 2>&1; echo "rc=$?"; tail -15 $OUT/run.log
