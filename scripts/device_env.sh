# Sourced by the device_*.sh scripts: NVLink multicast off, the carried gguf wheel on the path.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; M=/dev/shm/models; mkdir -p "$M" "$OUT"
L="python3 -m llamatp"; V=.carry/ggml-vocab-llama-bpe.gguf
step() { echo; echo "=== $(date +%T) $*"; }
# The synthetic Llama-3 files of the reference sheet, written side by side.
synth_reference_models() {
  $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
  $L synth llama3-8b -t f16 --vocab $V -o $M/8b-f16.gguf 2>/dev/null &
  $L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null &
  wait; ls -la $M
}
# The 8B Q4_0 file and a 2-layer slice of its shape (for logit comparisons), written side by side.
synth_8b_and_slice() {
  $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null &
  $L synth llama3-8b -t q4_0 --set n_layer=2 --vocab $V -o $M/8b-2layers-q4_0.gguf 2>/dev/null
  wait
}
# llamatp bench as a markdown table appended to $OUT/bench.md; T sets the time limit, R the repetitions.
bench_md() {
  timeout -k 5 ${T:-240} $L bench -r ${R:-3} -o md "$@" 2>>$OUT/bench_err.log | grep -v '^build' | tee -a $OUT/bench.md
  pkill -9 -f "llamatp bench" 2>/dev/null
}
# bench_md with the earlier build in .carry/baseline (`git archive REV llamatp | tar -x -C
# .carry/baseline`), if there is one: the same run's baseline. $1 names the step.
bench_baseline() {
  [ -d .carry/baseline/llamatp ] || return 0
  step "$1, baseline package"; shift
  (cd .carry/baseline && PYTHONPATH=/tmp/site:$PWD bench_md "$@")
}
# The 70B Q4_0 file of the reference sheet, unless an earlier script on this machine wrote it.
synth_70b_if_missing() {
  [ -f $M/70b-q4_0.gguf ] || $L synth llama3-70b -t q4_0 --vocab $V -o $M/70b-q4_0.gguf 2>/dev/null
}
# GPU 0's memory bandwidth as rated (`quant.gemv.memory_bandwidth`), whole and per multiprocessor.
rated_bandwidth() {
  python3 -c "
import torch; from llamatp.quant.gemv import memory_bandwidth, sm_count
d = torch.device('cuda:0'); bw = memory_bandwidth(d)
print(f'rated memory bandwidth {bw / 1e9:.0f} GB/s, {bw / sm_count(d) / 1e9:.1f} GB/s a multiprocessor')"
}
# Device-to-device copy bandwidth of GPU 0 (bytes read + written), the yardstick of benchmarks.md.
copy_bandwidth() {
  python3 -c "import sys; sys.path.insert(0, 'scripts'); from bench_gemv import copy_bandwidth; print(f'copy bandwidth {copy_bandwidth():.0f} GB/s')"
}
