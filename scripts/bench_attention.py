"""Benchmark the decode attention kernel on a CUDA GPU, with a 16-bit, a q8_0 and a q4_0 KV cache.

For the query heads one GPU holds of Llama 3 8B (whole, and over 2 GPUs) and of 70B over
4 GPUs, at a context depth of 8192:
- checks `rope_store_kv` and `decode_attention` against their torch twins on the GPU, for
  each cache type, and the kernel's conversion of q8_0 and q4_0 codes against its emulation,
  bit for bit;
- times `decode_attention` inside a CUDA graph, cycling through enough copies of the cache
  to defeat the L2, and reports GB/s as bytes of K and V read (codes and scales where quantized)
  per second, next to the device-to-device copy bandwidth (bytes read + written);
- sets what the deeper cache adds to its time beside what it adds to a kernel that only reads
  the same bytes: how near attention comes to a plain read's rate.

`--sweep` times a grid of tilings (`kernels.AttentionTiling`; `--grid` sets a field's values) at
`--depth` and at `--short` (where most steps of a short chat run) and prints, for each cache type,
the five of least total time over the shapes and both depths, and the current ones
(`kernels.decode_tiling`, which may differ by shape). The kernel alone can rank tilings otherwise
than the model does (where kernels launch early); `device_attention_tiling_model.sh` times them
in the model.

    python scripts/bench_attention.py [--sweep [--grid num_warps=4,8 ...]] [--depth 8192] [--short 128] [--types bf16,q8_0,q4_0]
        [--shapes 8B,8B/2,70B/4]
"""

from __future__ import annotations

import argparse
import itertools

import torch
import triton
import triton.language as tl

from bench_gemv import copies_to_defeat_l2, copy_bandwidth, graph_us, relative_error
from llamatp import kernels
from llamatp.kernels import AttentionTiling, decode_tiling
from llamatp.kv_cache import QUANTIZERS, CacheTensor, pack_q4

HEAD_DIM = 128
# (name, KV heads on the GPU, query heads per KV head)
SHAPES = [("8B", 8, 4), ("8B/2", 4, 4), ("70B/4", 2, 8)]
SWEEP = {"block_n": [32, 64, 128], "programs_per_sm": [1, 2, 4, 8], "num_warps": [1, 2, 4], "num_stages": [1, 2, 3, 4],
         "keys_major": [0, 1]}


def cache(values: torch.Tensor, cache_type: str) -> CacheTensor:
    if cache_type in QUANTIZERS:
        return CacheTensor(*QUANTIZERS[cache_type][0](values))
    return CacheTensor(values.to(torch.bfloat16))


def kv_types(cache_type: str) -> tuple[str, str]:
    """The types of K and V: "q8_0/bf16" names both, "q8_0" one for both."""
    k_type, _, v_type = cache_type.partition("/")
    return k_type, v_type or k_type


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
        k_type, v_type = kv_types(cache_type)
        fast_k, fast_v, ref_k, ref_v = (cache(empty, t) for t in (k_type, v_type, k_type, v_type))
        q_fast = kernels.rope_store_kv_triton(q, k, v, inv_freq, neox, fast_k, fast_v, pos)
        q_ref = kernels.rope_store_kv_torch(q, k, v, inv_freq, neox, ref_k, ref_v, pos)
        stored = max(relative_error(f.read(rope_ctx, torch.float32), r.read(rope_ctx, torch.float32))
                     for f, r in ((fast_k, ref_k), (fast_v, ref_v)))
        q_error = relative_error(q_fast, q_ref.float())
        print(f"check {cache_type} rope_store_kv neox={neox}: q {q_error:.2e}, stored K/V {stored:.2e}")
        # The kernel rounds the rotated key from f32, the twin from bf16: where that moves a
        # block's largest value, the block's codes may move a step, and a q4_0 step is 1/8 of it.
        if q_error > 1e-2 or stored > (5e-2 if "q4_0" in cache_type else 2e-2):
            raise SystemExit(f"rope_store_kv ({cache_type}, neox={neox}) differs from its torch twin")
    filled_k, filled_v = (cache(torch.randn(n_kv, 8 * n_ctx, HEAD_DIM, device="cuda", generator=g), t)
                          for t in kv_types(cache_type))
    q1 = q[0].view(n_kv, group, HEAD_DIM)
    # Past 8000 a chunk holds enough keys for a float cache's blocks to come through TMA
    # (`kernels.reads_by_tma`); float slots past the query hold NaN, which must never be read.
    for p in (0, 63, 900, 8000):
        at = torch.tensor([p], device="cuda")
        ref = kernels.decode_attention_torch(q1, filled_k, filled_v, at, 0, 0.088)
        k_p, v_p = (CacheTensor(c.data.clone(), c.scale) for c in (filled_k, filled_v))
        for c in (k_p, v_p):
            if c.scale is None:
                c.data[:, p + 1 :] = float("nan")
        fast = kernels.decode_attention_triton(q1, k_p, v_p, at, 0, 0.088)
        error = relative_error(fast, ref.float())
        print(f"check {cache_type} decode_attention pos {p}: {error:.2e}")
        if error > 2e-2:
            raise SystemExit(f"decode_attention ({cache_type}, pos {p}) differs from its torch twin")


@triton.jit
def _conversion_kernel(codes_ptr, scales_ptr, out_ptr, emulated_ptr, BLOCKS: tl.constexpr, Q4: tl.constexpr):
    """BLOCKS blocks of 32 codes, read as int32 words (8 of q8_0, 4 of q4_0), through the GPU
    conversion and its emulation."""
    W: tl.constexpr = 4 if Q4 else 8
    blocks = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)
    words = tl.load(codes_ptr.to(tl.pointer_type(tl.int32)) + blocks[:, None] * W + tl.arange(0, W)[None, :])
    scales = tl.broadcast_to(tl.load(scales_ptr + blocks)[:, None], [BLOCKS, W])
    at = blocks[:, None] * 32 + tl.arange(0, 32)[None, :]
    if Q4:
        tl.store(out_ptr + at, kernels._q4_words_f16(words, scales, False))
        tl.store(emulated_ptr + at, kernels._q4_words_f16(words, scales, True))
    else:
        tl.store(out_ptr + at, kernels._q8_words_f16(words, scales, False))
        tl.store(emulated_ptr + at, kernels._q8_words_f16(words, scales, True))


def check_conversion(cache_type: str) -> None:
    """Every code times f16 scales of every exponent: the PTX conversion and its emulation
    (f32 product rounded to f16) must give the same bits, in the same order."""
    g = torch.Generator(device="cuda").manual_seed(2)
    n_blocks = 1 << 14
    q4 = cache_type == "q4_0"
    levels, offset = (16, 0) if q4 else (256, -128)
    codes = torch.arange(n_blocks * 32, device="cuda").remainder(levels).add(offset)
    codes = codes[torch.randperm(codes.numel(), device="cuda", generator=g)].view(n_blocks, 32)
    exponents = torch.randint(-24, 9, (n_blocks,), device="cuda", generator=g)
    scales = (torch.rand(n_blocks, device="cuda", generator=g) + 1) * torch.exp2(exponents.float())
    scales = scales.to(torch.float16)
    out, emulated = (torch.empty(n_blocks, 32, dtype=torch.float16, device="cuda") for _ in range(2))
    stored = pack_q4(codes) if q4 else codes.to(torch.int8)
    _conversion_kernel[(n_blocks // 64,)](stored, scales, out, emulated, BLOCKS=64, Q4=q4)
    differ = int((out.view(torch.int16) != emulated.view(torch.int16)).sum())
    expected = ((codes - 8 if q4 else codes).float() * scales.float()[:, None]).to(torch.float16)
    misplaced = int((emulated.view(torch.int16) != expected.view(torch.int16)).sum())
    print(f"check {cache_type} conversion: {differ} of {out.numel()} values differ from the emulation, "
          f"{misplaced} of the emulation from torch")
    if differ or misplaced:
        raise SystemExit(f"the {cache_type} conversion differs from its emulation or from torch")


def time_attention(cache_type: str, n_kv: int, group: int, depth: int,
                   tiling: AttentionTiling | None = None) -> tuple[float, int]:
    """Microseconds per call and bytes of K and V read, at the last position of a `depth` cache."""
    g = torch.Generator(device="cuda").manual_seed(1)
    n_ctx = depth + 128  # as `bench -d depth -n 128` sizes it
    k, v = (cache(torch.randn(n_kv, n_ctx, HEAD_DIM, device="cuda", generator=g), t) for t in kv_types(cache_type))
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
    return us, nbytes


@triton.jit
def _read_kernel(words_ptr, out_ptr, n_words, per_program, BLOCK: tl.constexpr):
    """Reads a span of `per_program` int32 words per program and keeps one sum of them."""
    start = tl.program_id(0) * per_program
    stop = tl.minimum(start + per_program, n_words)
    total = tl.zeros([BLOCK], tl.int32)
    for w0 in range(start, stop, BLOCK):
        w = w0 + tl.arange(0, BLOCK)
        total += tl.load(words_ptr + w, mask=w < stop, other=0)
    tl.store(out_ptr + tl.program_id(0), tl.sum(total))


def time_read(nbytes: int) -> float:
    """Microseconds to read nbytes in one kernel launch that does nothing else: the least time
    over a few grids and spans per load, a floor for attention over the same bytes."""
    n_words = nbytes // 4
    buffers = [torch.zeros(n_words, dtype=torch.int32, device="cuda") for _ in range(copies_to_defeat_l2(nbytes))]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    times = []
    for programs, block, warps, stages in itertools.product((sms, 2 * sms, 4 * sms), (1024, 4096, 8192), (4, 8), (1, 3)):
        out = torch.empty(programs, dtype=torch.int32, device="cuda")
        per_program = triton.cdiv(n_words, programs)
        times.append(graph_us([lambda b=b: _read_kernel[(programs,)](b, out, n_words, per_program, BLOCK=block,
                                                                      num_warps=warps, num_stages=stages)
                               for b in buffers]))
    del buffers
    torch.cuda.empty_cache()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8192, help="keys in the cache before the query")
    parser.add_argument("--short", type=int, default=128, help="the short depth of --sweep's best tilings")
    parser.add_argument("--sweep", action="store_true", help="time the grid of tilings SWEEP")
    parser.add_argument("--grid", nargs="*", default=[], metavar="FIELD=V,V",
                        help="values of a tiling field for --sweep in place of SWEEP's, e.g. num_warps=4,8")
    parser.add_argument("--shapes", default=",".join(name for name, _, _ in SHAPES),
                        help=f"shapes to time ({', '.join(name for name, _, _ in SHAPES)})")
    parser.add_argument("--types", default="bf16,q8_0,q4_0",
                        help="cache types to time (bf16, q8_0, q4_0; K/V for two, as q8_0/bf16)")
    args = parser.parse_args()
    copy_gbps = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {copy_gbps:.0f} GB/s (read + write)")
    types = args.types.split(",")
    shapes = [shape for shape in SHAPES if shape[0] in args.shapes.split(",")]
    for cache_type in types:
        check(cache_type)
    for quantized in QUANTIZERS:
        if any(quantized in t for t in types):
            check_conversion(quantized)
    for name, n_kv, group in shapes:
        for cache_type in types:
            timed = {depth: time_attention(cache_type, n_kv, group, depth) for depth in (args.short, args.depth)}
            for depth, (us, nbytes) in timed.items():
                gbps = nbytes / us / 1e3
                print(f"{name:6} {cache_type:9} depth {depth}: {us:7.1f} us {gbps:6.0f} GB/s "
                      f"({100 * gbps / copy_gbps:.0f}% of copy) {_tiling(cache_type, n_kv)}")
            # Against one kernel that only reads the same bytes: what the deeper cache adds to each.
            reads = {depth: time_read(nbytes) for depth, (_, nbytes) in timed.items()}
            added = timed[args.depth][1] - timed[args.short][1]
            grown, floor = timed[args.depth][0] - timed[args.short][0], reads[args.depth] - reads[args.short]
            print(f"{name:6} {cache_type:9} depth {args.short} -> {args.depth}: attention +{grown:.1f} us "
                  f"({added / grown / 1e3:.0f} GB/s), a plain read +{floor:.1f} us ({added / floor / 1e3:.0f} GB/s; "
                  f"{reads[args.short]:.1f} -> {reads[args.depth]:.1f} us)")
    if not args.sweep:
        return
    grid = dict(SWEEP)
    for item in args.grid:
        field, _, values = item.partition("=")
        if field not in grid:
            raise SystemExit(f"--grid: no tiling field {field!r} (fields: {', '.join(grid)})")
        grid[field] = [int(v) for v in values.split(",")]
    for cache_type in types:
        # (deep us, short us) per tiling, one pair per shape
        times: dict[AttentionTiling, list[tuple[float, float]]] = {}
        for name, n_kv, group in shapes:
            for values in itertools.product(*grid.values()):
                tiling = AttentionTiling(*values)
                deep, _ = time_attention(cache_type, n_kv, group, args.depth, tiling)
                short, _ = time_attention(cache_type, n_kv, group, args.short, tiling)
                times.setdefault(tiling, []).append((deep, short))
        ranked = sorted(times, key=lambda t: sum(map(sum, times[t])))
        current = {_tiling(cache_type, n_kv) for _, n_kv, _ in shapes}
        for tiling in ranked[:5] + [t for t in ranked[5:] if t in current]:
            per_shape = "  ".join(f"{name} {deep:5.1f}/{short:4.1f}" for (name, _, _), (deep, short)
                               in zip(shapes, times[tiling]))
            print(f"sweep {cache_type:9} total {sum(map(sum, times[tiling])):6.1f} us "
                  f"(depth {args.depth}/{args.short}: {per_shape}){' current' if tiling in current else ''} {tiling}")


def _tiling(cache_type: str, n_kv: int) -> AttentionTiling:
    k, v = (cache(torch.zeros(1, 1, HEAD_DIM, device="cuda"), t) for t in kv_types(cache_type))
    return decode_tiling(k, v, n_kv)


if __name__ == "__main__":
    main()
