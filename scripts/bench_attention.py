"""Benchmark the decode attention kernel on a CUDA GPU, with a 16-bit and a q8_0 KV cache.

For the query heads one GPU holds of Llama 3 8B (whole, and over 2 GPUs) and of 70B over
4 GPUs, at a context depth of 8192:
- checks `rope_store_kv` and `decode_attention` against their torch twins on the GPU, for
  bf16 and q8_0 caches;
- times `decode_attention` inside a CUDA graph, cycling through enough copies of the cache
  to defeat the L2, and reports GB/s as bytes of K and V read (codes and scales for q8_0)
  per second, next to the device-to-device copy bandwidth (bytes read + written).

`--sweep` times a grid of tilings (`kernels.AttentionTiling`) and prints the best three for
each cache type and shape, and the tiling of least total time (`kernels.DECODE_TILINGS`).

    python scripts/bench_attention.py [--sweep] [--depth 8192] [--types bf16,q8_0]
"""

from __future__ import annotations

import argparse
import itertools

import torch

from bench_gemv import copies_to_defeat_l2, copy_bandwidth, graph_us, relative_error
from llamatp import kernels
from llamatp.kernels import AttentionTiling, decode_tiling
from llamatp.kv_cache import CacheTensor, quantize_q8_0

HEAD_DIM = 128
# (name, KV heads on the GPU, query heads per KV head)
SHAPES = [("8B", 8, 4), ("8B/2", 4, 4), ("70B/4", 2, 8)]
SWEEP = {"block_n": [32, 64, 128], "programs_per_sm": [1, 2, 4], "num_warps": [4, 8], "num_stages": [2, 3, 4]}


def cache(values: torch.Tensor, cache_type: str) -> CacheTensor:
    return CacheTensor(*quantize_q8_0(values)) if cache_type == "q8_0" else CacheTensor(values.to(torch.bfloat16))


def cache_bytes(c: CacheTensor, n: int) -> int:
    """Bytes of the first n positions."""
    total = c.data[:, :n].numel() * c.data.element_size()
    return total + (c.scale[:, :n].numel() * c.scale.element_size() if c.scale is not None else 0)


def check(cache_type: str) -> None:
    """The GPU kernels against the torch twins: storing rotated keys, then attending."""
    g = torch.Generator(device="cuda").manual_seed(0)
    n_kv, group, n_ctx, T = 8, 4, 1024, 5
    q = torch.randn(T, n_kv * group, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    k, v = (torch.randn(T, n_kv, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(2))
    # Positions near 2^17: the kernel's cos and sin must reduce large angles as torch does.
    rope_ctx = 1 << 17
    pos = torch.arange(rope_ctx - T, rope_ctx, device="cuda")
    inv_freq = 500000.0 ** (-torch.arange(0, HEAD_DIM, 2, device="cuda") / HEAD_DIM)
    empty = torch.zeros(n_kv, rope_ctx, HEAD_DIM, device="cuda")
    for neox in (False, True):
        fast_k, fast_v, ref_k, ref_v = (cache(empty, cache_type) for _ in range(4))
        q_fast = kernels.rope_store_kv_triton(q, k, v, inv_freq, neox, fast_k, fast_v, pos)
        q_ref = kernels.rope_store_kv_torch(q, k, v, inv_freq, neox, ref_k, ref_v, pos)
        stored = max(relative_error(f.read(rope_ctx, torch.float32), r.read(rope_ctx, torch.float32))
                     for f, r in ((fast_k, ref_k), (fast_v, ref_v)))
        q_error = relative_error(q_fast, q_ref.float())
        print(f"check {cache_type} rope_store_kv neox={neox}: q {q_error:.2e}, stored K/V {stored:.2e}")
        if q_error > 1e-2 or stored > 2e-2:
            raise SystemExit(f"rope_store_kv ({cache_type}, neox={neox}) differs from its torch twin")
    filled_k, filled_v = (cache(torch.randn(n_kv, n_ctx, HEAD_DIM, device="cuda", generator=g), cache_type)
                          for _ in range(2))
    q1 = q[0].view(n_kv, group, HEAD_DIM)
    for p in (0, 63, 900):
        at = torch.tensor([p], device="cuda")
        fast = kernels.decode_attention_triton(q1, filled_k, filled_v, at, 0, 0.088)
        ref = kernels.decode_attention_torch(q1, filled_k, filled_v, at, 0, 0.088)
        error = relative_error(fast, ref.float())
        print(f"check {cache_type} decode_attention pos {p}: {error:.2e}")
        if error > 2e-2:
            raise SystemExit(f"decode_attention ({cache_type}, pos {p}) differs from its torch twin")


def time_attention(cache_type: str, n_kv: int, group: int, depth: int,
                   tiling: AttentionTiling | None = None) -> tuple[float, float]:
    """Microseconds per call and GB/s of K and V read, at the last position of a `depth` cache."""
    g = torch.Generator(device="cuda").manual_seed(1)
    n_ctx = depth + 128  # as `bench -d depth -n 128` sizes it
    k = cache(torch.randn(n_kv, n_ctx, HEAD_DIM, device="cuda", generator=g), cache_type)
    v = cache(torch.randn(n_kv, n_ctx, HEAD_DIM, device="cuda", generator=g), cache_type)
    q = torch.randn(n_kv, group, HEAD_DIM, device="cuda", generator=g, dtype=torch.bfloat16)
    pos = torch.tensor([depth - 1], device="cuda")
    nbytes = cache_bytes(k, depth) + cache_bytes(v, depth)
    copies = [(k, v)] + [(CacheTensor(k.data.clone(), None if k.scale is None else k.scale.clone()),
                          CacheTensor(v.data.clone(), None if v.scale is None else v.scale.clone()))
                         for _ in range(copies_to_defeat_l2(nbytes) - 1)]
    us = graph_us([lambda kc=kc, vc=vc: kernels.decode_attention_triton(q, kc, vc, pos, 0, 0.088, tiling=tiling)
                   for kc, vc in copies])
    del copies, k, v
    torch.cuda.empty_cache()
    return us, nbytes / (us * 1e-6) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8192, help="keys in the cache before the query")
    parser.add_argument("--sweep", action="store_true", help="time the grid of tilings SWEEP")
    parser.add_argument("--types", default="bf16,q8_0", help="cache types to time (bf16, q8_0)")
    args = parser.parse_args()
    copy_gbps = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {copy_gbps:.0f} GB/s (read + write)")
    types = args.types.split(",")
    for cache_type in types:
        check(cache_type)
    for name, n_kv, group in SHAPES:
        for cache_type in types:
            us, gbps = time_attention(cache_type, n_kv, group, args.depth)
            print(f"{name:6} {cache_type:5} depth {args.depth}: {us:7.1f} us {gbps:6.0f} GB/s "
                  f"({100 * gbps / copy_gbps:.0f}% of copy) {_tiling(cache_type)}")
    if not args.sweep:
        return
    for cache_type in types:
        totals: dict[AttentionTiling, float] = {}
        for name, n_kv, group in SHAPES:
            timings = []
            for values in itertools.product(*SWEEP.values()):
                tiling = AttentionTiling(*values)
                us, gbps = time_attention(cache_type, n_kv, group, args.depth, tiling)
                totals[tiling] = totals.get(tiling, 0.0) + us
                timings.append((us, gbps, tiling))
            for us, gbps, tiling in sorted(timings, key=lambda t: t[0])[:3]:
                print(f"sweep {name:6} {cache_type:5}: {us:7.1f} us {gbps:6.0f} GB/s {tiling}")
        best = min(totals, key=lambda t: totals[t])
        current = _tiling(cache_type)
        print(f"sweep {cache_type}: least total time {totals[best]:.1f} us with {best!r} "
              f"(current {totals.get(current, float('nan')):.1f} us)")


def _tiling(cache_type: str) -> AttentionTiling:
    sample = cache(torch.zeros(1, 1, HEAD_DIM, device="cuda"), cache_type)
    return decode_tiling(sample, sample)


if __name__ == "__main__":
    main()
