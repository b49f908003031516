#!/usr/bin/env bash
# Decode attention over an f32 cache with 256-value heads (Gemma 3's), whose default tiling
# needs more shared memory than an H100 has (`kernels.fit_shared_memory` fits it): greedy
# tokens on GPU 0 against the CPU, and the tiling chosen.
set -uo pipefail
source scripts/device_env.sh
$L synth tiny-gemma3 -o $M/tiny-gemma3.gguf
python3 -c "
import torch
from llamatp import kernels
from llamatp.kernels import AttentionTiling
from llamatp.quant.gemv import max_shared_memory
limit = max_shared_memory(torch.device('cuda:0'))
for tiling in (kernels.DECODE_TILINGS['float'], kernels.FLOAT_TILING_MANY_HEADS):
    print(f'{tiling} -> {kernels.fit_shared_memory(tiling, 256, 4, limit)} (limit {limit} bytes)')
"
for dev in cpu cuda:0; do
  step "tiny-gemma3, -ctk f32 -ctv f32, $dev"
  $L run -m $M/tiny-gemma3.gguf -p "The quick brown fox jumps over the lazy dog" -n 48 --temp 0 --ignore-eos -ctk f32 -ctv f32 \
    -dev $dev 2>$OUT/run_err_$dev.log > $OUT/tokens_$dev.txt; echo "exit $?"; tail -2 $OUT/run_err_$dev.log
done
cmp $OUT/tokens_cpu.txt $OUT/tokens_cuda:0.txt && echo "same text on GPU and CPU"
