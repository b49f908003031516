"""Run the decode attention a few times at one depth, for a profiler to take one launch.

    ncu --kernel-name _decode_attention_chunk --launch-skip 2 --launch-count 1 \\
        python scripts/attention_once.py q8_0 8192 8 4 [128,2,4,1]

Arguments: cache type (bf16, q8_0, q4_0, or K/V as q8_0/bf16), depth, KV heads, query heads per KV
head, and optionally a tiling (block_n,programs_per_sm,num_warps,num_stages).
"""

from __future__ import annotations

import sys

import torch

from bench_attention import HEAD_DIM, cache, kv_types
from llamatp import kernels
from llamatp.kernels import AttentionTiling


def main() -> None:
    cache_type, depth, n_kv, group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    tiling = AttentionTiling(*map(int, sys.argv[5].split(","))) if len(sys.argv) > 5 else None
    g = torch.Generator(device="cuda").manual_seed(1)
    k, v = (cache(torch.randn(n_kv, depth + 128, HEAD_DIM, device="cuda", generator=g), t)
            for t in kv_types(cache_type))
    q = torch.randn(n_kv, group, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    pos = torch.tensor([depth - 1], device="cuda")
    for _ in range(3):
        kernels.decode_attention_triton(q, k, v, pos, 0, 0.088, tiling=tiling)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
