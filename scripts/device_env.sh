# Sourced by the device_*.sh scripts: NVLink multicast off, the carried gguf wheel on the path.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; M=/dev/shm/models; mkdir -p "$M" "$OUT"
L="python3 -m llamatp"; V=.carry/ggml-vocab-llama-bpe.gguf
step() { echo; echo "=== $(date +%T) $*"; }
