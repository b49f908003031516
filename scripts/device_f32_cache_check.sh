#!/usr/bin/env bash
# Decode attention over an f32 cache with 256-value heads (Gemma 3's), whose default tiling
# needs more shared memory than an H100 has (`kernels.fit_shared_memory` fits it): the tiling
# chosen, the kernel against its torch twin on GPU 0, and greedy text on GPU 0 and on the CPU.
set -uo pipefail
source scripts/device_env.sh
$L synth tiny-gemma3 -o $M/tiny-gemma3.gguf
python3 -c "
import torch
from llamatp import kernels
from llamatp.kv_cache import CacheTensor
from llamatp.quant.gemv import max_shared_memory
limit = max_shared_memory(torch.device('cuda:0'))
for tiling in (kernels.DECODE_TILINGS['float'], kernels.FLOAT_TILING_MANY_HEADS):
    print(f'{tiling} -> {kernels.fit_shared_memory(tiling, 256, 4, limit)} (limit {limit} bytes)')
g = torch.Generator(device='cuda').manual_seed(0)
for n_kv, group in ((1, 4), (2, 2), (4, 2)):
    for window in (0, 1000):
        q = torch.randn(n_kv, group, 256, device='cuda', generator=g).bfloat16()
        k, v = (CacheTensor(torch.randn(n_kv, 4096, 256, device='cuda', generator=g)) for _ in range(2))
        pos = torch.tensor([3000], device='cuda')
        fast = kernels.decode_attention_triton(q, k, v, pos, window, 256 ** -0.5).float()
        ref = kernels.decode_attention_torch(q, k, v, pos, window, 256 ** -0.5).float()
        error = ((fast - ref).norm() / ref.norm()).item()
        print(f'{n_kv} KV heads x {group}, window {window}: relative error {error:.2e}')
"
for dev in cpu cuda:0; do
  name=${dev/:/}
  step "tiny-gemma3, -ctk f32 -ctv f32, $dev"
  $L run -m $M/tiny-gemma3.gguf -p "The quick brown fox jumps over the lazy dog" -n 48 --temp 0 --ignore-eos -ctk f32 -ctv f32 \
    -dev $dev 2>$OUT/run_err_$name.log > $OUT/tokens_$name.txt; echo "exit $?"; tail -2 $OUT/run_err_$name.log
done
cmp $OUT/tokens_cpu.txt $OUT/tokens_cuda0.txt && echo "same text on GPU and CPU"
