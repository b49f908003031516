"""Benchmark the GGUF GEMV kernels on a CUDA GPU, against a bf16 cuBLAS matrix-vector product.

For every weight type and shape (a Llama 3 8B layer, and Llama 3 70B split over 2 and 4
GPUs), on random but valid GGUF data:
- checks gemv against x @ W.T with W from the torch dequantizer, and dequantize_packed too;
- times gemv with triton.testing.do_bench (median, L2 flushed, launch overhead included)
  and inside a CUDA graph, cycling through enough copies of the weight to defeat the L2,
  with x rounded beforehand, as the model's kernels do (`gemv(..., rounded=)`);
- reports GB/s as GGUF bytes of the weight per second, next to the device-to-device copy
  bandwidth (bytes read + written) and the same product with a bf16 weight (cuBLAS);
- times dequantize_packed to bf16, with GB/s counting the planes read and the bf16 written.

`--sweep` instead times a small grid of batch-1 tilings on the shapes that decide
`gemv.TILINGS` (Llama 3 8B's projections and output head) and prints the best tiling for
each type and shape class as lines to paste into that table; then the same for
`dequantize_packed` (`gemv.DEQUANT_TILINGS`) on a 14336x4096 weight. `--apply` writes those
lines into llamatp/quant/gemv.py. `--sweep --dense-only` times the tilings of the bf16 GEMV
(`dense_gemv.DENSE_TILING`) against cuBLAS on the 8B F16 projections.

    python scripts/bench_gemv.py --out gemv.json
    python scripts/bench_gemv.py --sweep [--apply] --out sweep.json
    python scripts/bench_gemv.py --sweep --dense-only [--apply]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import triton
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp import dense_gemv as dense_module
from llamatp.dense_gemv import DenseTiling, dense_gemv
from llamatp.quant import gemv as gemv_module
from llamatp.quant.dequant import dequantize_to
from llamatp.quant.gemv import (
    MANY_ROWS, DequantTiling, Tiling, dequantize_packed, gemv, pick_config, quantize_rows, repack,
)  # fmt: skip

Q = GGMLQuantizationType
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
# (rows, cols) = (out, in) features. 8B: q/o, gate/up, down, lm_head, k/v.
# 70B over 2 and 4 GPUs: q (rows split), o (columns split), gate/up, down, k/v, lm_head.
SHAPES = {
    "8B": [(4096, 4096), (14336, 4096), (4096, 14336), (128256, 4096), (1024, 4096)],
    "70B/2": [(4096, 8192), (8192, 4096), (14336, 8192), (8192, 14336), (512, 8192), (64128, 8192)],
    "70B/4": [(2048, 8192), (8192, 2048), (7168, 8192), (8192, 7168), (256, 8192), (32064, 8192)],
}
BATCH_SWEEP = {"types": ["Q4_K", "Q8_0"], "shapes": [(4096, 4096), (14336, 4096)], "batches": [2, 4, 8]}
TILING_SWEEP = {
    "types": ["Q4_0", "Q8_0", "Q4_K", "Q6_K"],
    "shapes": [(4096, 4096), (4096, 14336), (14336, 4096), (128256, 4096)],
    # block_n, block_c, num_warps
    "tiles": [(32, 4, 4), (32, 2, 2), (32, 8, 8), (32, 4, 2), (32, 8, 4), (32, 16, 16), (64, 4, 4), (32, 16, 8)],
    "programs_per_sm": [2, 4, 8, 16],
}
DEQUANT_SWEEP = {"shape": (14336, 4096), "block_u": [2, 4, 8, 16], "num_warps": [4, 8]}
# The 8B F16 projections whole and split over two GPUs: qkv, o, gate|up, down.
DENSE_SWEEP = {
    "shapes": [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336),
               (3072, 4096), (4096, 2048), (14336, 4096), (4096, 7168)],
    "tiles": [(8, 256, 4), (8, 512, 4), (16, 256, 4), (16, 512, 8), (32, 256, 8), (32, 128, 4), (16, 128, 2)],
}
# Byte offsets of the float16 scale fields inside one block (ggml-common.h).
F16_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q8_0": (0,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_gguf(type_name: str, n_rows: int, n_cols: int) -> torch.Tensor:
    """Random bytes with finite float16 scales: [n_rows, row_bytes] uint8 on the GPU."""
    block, type_size = GGML_QUANT_SIZES[Q[type_name]]
    raw = torch.randint(0, 256, (n_rows, n_cols // block, type_size), dtype=torch.uint8, device="cuda")
    for offset in F16_FIELDS[type_name]:
        scales = (torch.randn(n_rows, n_cols // block, 1, device="cuda") * 0.01).half()
        raw[:, :, offset : offset + 2] = scales.view(torch.uint8)
    return raw.reshape(n_rows, -1)


def median_us(fn: Callable[[], object]) -> float:
    """triton.testing.do_bench's median, in microseconds: L2 flushed, launch overhead included."""
    return triton.testing.do_bench(fn, warmup=5, rep=25) * 1e3


def graph_us(calls: list[Callable[[], object]], replays: int = 20) -> float:
    """Microseconds per call, the calls captured back to back in one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:  # warm-up outside capture: compiles kernels, allocates pools
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    return sorted(times)[len(times) // 2]


def copies_to_defeat_l2(nbytes: int) -> int:
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return min(64, max(1, math.ceil(2 * l2 / nbytes)))


def copy_bandwidth() -> float:
    """Device-to-device copy, GB/s counting bytes read and written."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).norm() / ref.norm())


def bench_bf16(n_rows: int, n_cols: int, batch: int) -> dict[str, float]:
    weight = torch.randn(n_rows, n_cols, device="cuda", dtype=torch.bfloat16)
    weights = [weight] + [weight.clone() for _ in range(copies_to_defeat_l2(weight.nbytes) - 1)]
    x = torch.randn(batch, n_cols, device="cuda", dtype=torch.bfloat16)
    result = {
        "bf16_us": median_us(lambda: F.linear(x, weight)),
        "bf16_graph_us": graph_us([lambda w=w: F.linear(x, w) for w in weights]),
    }
    del weight, weights
    torch.cuda.empty_cache()
    return result


def packed_copies(type_name: str, n_rows: int, n_cols: int) -> tuple[torch.Tensor, list]:
    """Random GGUF data and enough repacked copies of it to defeat the L2 when cycled through."""
    raw = random_gguf(type_name, n_rows, n_cols)
    qtype = Q[type_name]
    return raw, [repack(raw, qtype, n_rows, n_cols) for _ in range(copies_to_defeat_l2(raw.numel()))]


def bench_case(type_name: str, n_rows: int, n_cols: int, batch: int) -> dict:
    qtype = Q[type_name]
    raw, copies = packed_copies(type_name, n_rows, n_cols)
    packed = copies[0]
    x = torch.randn(batch, n_cols, device="cuda", dtype=torch.bfloat16)
    reference = x.float() @ dequantize_to(raw, qtype, torch.float32).T
    rel_err = relative_error(gemv(x, packed), reference)
    del reference
    dense_err = relative_error(dequantize_packed(packed, torch.float32), dequantize_to(raw, qtype, torch.float32))
    rounded = quantize_rows(x)
    us = median_us(lambda: gemv(x, packed, rounded=rounded))
    g_us = graph_us([lambda w=w: gemv(x, w, rounded=rounded) for w in copies])
    dequant_us = median_us(lambda: dequantize_packed(packed))
    dequant_bytes = packed.nbytes + n_rows * n_cols * 2  # planes read, bf16 written
    cfg = pick_config(packed, batch, torch.cuda.get_device_properties(0).multi_processor_count)
    result = {
        "type": type_name, "rows": n_rows, "cols": n_cols, "batch": batch, "config": cfg.__dict__,
        "gguf_bytes": raw.numel(), "packed_bytes": packed.nbytes, "us": us, "graph_us": g_us,
        "gbps": raw.numel() / (g_us * 1e-6) / 1e9, "rel_err": rel_err, "dequant_rel_err": dense_err,
        "dequant_us": dequant_us, "dequant_gbps": dequant_bytes / (dequant_us * 1e-6) / 1e9,
    }  # fmt: skip
    del raw, packed, copies
    torch.cuda.empty_cache()
    return result


def sweep_tilings() -> list[Tiling]:
    tiles, per_sm = TILING_SWEEP["tiles"], TILING_SWEEP["programs_per_sm"]
    return [Tiling(n, c, warps, p) for (n, c, warps), p in itertools.product(tiles, per_sm)]


def sweep_shape(type_name: str, n_rows: int, n_cols: int) -> list[dict]:
    """Batch-1 graph time of every tiling in TILING_SWEEP on one weight, fastest first."""
    raw, copies = packed_copies(type_name, n_rows, n_cols)
    x = torch.randn(1, n_cols, device="cuda", dtype=torch.bfloat16)
    reference = x.float() @ dequantize_to(raw, Q[type_name], torch.float32).T
    sm_count = torch.cuda.get_device_properties(0).multi_processor_count
    rounded = quantize_rows(x)
    results, times = [], {}
    for tiling in sweep_tilings():
        config = pick_config(copies[0], 1, sm_count, tiling)
        if config not in times:  # tilings that differ only where this shape does not split K share a time
            if relative_error(gemv(x, copies[0], config), reference) > 1e-2:
                raise SystemExit(f"{type_name} {n_rows}x{n_cols} {config}: wrong result")
            times[config] = graph_us([lambda w=w: gemv(x, w, config, rounded) for w in copies], replays=10)
        us = times[config]
        results.append({"tiling": tiling, "config": config, "graph_us": us, "gbps": raw.numel() / (us * 1e-6) / 1e9})
    del raw, copies, reference
    torch.cuda.empty_cache()
    return sorted(results, key=lambda r: r["graph_us"])


def sweep(types: list[str], gemv_too: bool = True) -> tuple[dict[str, list[dict]], list[str], list[str]]:
    """Sweep these types over the shapes of TILING_SWEEP; print, per type and shape class, the
    tiling with the least total time over the class's shapes, as lines for `gemv.TILINGS`, and
    likewise for `gemv.DEQUANT_TILINGS`. Returns the timings and the two sets of lines (the
    first empty without `gemv_too`)."""
    sweeps, table = {}, []
    for type_name in types if gemv_too else []:
        totals: dict[tuple[bool, Tiling], float] = {}
        for n_rows, n_cols in TILING_SWEEP["shapes"]:
            results = sweep_shape(type_name, n_rows, n_cols)
            best, worst = results[0], results[-1]
            print(
                f"{type_name:5} {n_rows:>6}x{n_cols:<6} best {best['graph_us']:7.1f} us {best['gbps']:6.0f} GB/s "
                f"{best['config']}; worst {worst['graph_us']:7.1f} us"
            )
            for r in results:
                key = (n_rows >= MANY_ROWS, r["tiling"])
                totals[key] = totals.get(key, 0.0) + r["graph_us"]
            sweeps[f"{type_name} {n_rows}x{n_cols}"] = [
                {**r, "tiling": r["tiling"].__dict__, "config": r["config"].__dict__} for r in results
            ]
        for many_rows in (False, True):
            _, best_tiling = min((k for k in totals if k[0] == many_rows), key=lambda k: totals[k])
            table.append(f"    (Q.{type_name}, {many_rows}): {best_tiling},")
    if table:
        print("\nTILINGS entries (llamatp/quant/gemv.py):\n" + "\n".join(table))
    dequant_table = []
    for type_name in types:
        results = sweep_dequant(type_name, *DEQUANT_SWEEP["shape"])
        best, worst = results[0], results[-1]
        print(f"dequant {type_name:5} best {best['us']:7.1f} us {best['gbps']:6.0f} GB/s {best['tiling']}; worst {worst['us']:7.1f} us")
        dequant_table.append(f"    Q.{type_name}: {best['tiling']},")
        sweeps[f"dequant {type_name}"] = [{**r, "tiling": r["tiling"].__dict__} for r in results]
    print("\nDEQUANT_TILINGS entries (llamatp/quant/gemv.py):\n" + "\n".join(dequant_table))
    return sweeps, table, dequant_table


def apply_tables(path: str, table: list[str], dequant_table: list[str]) -> None:
    """Write these entries of TILINGS and DEQUANT_TILINGS into the source file at `path`, in
    place of the entries with the same keys; entries of types not swept stay."""
    source = open(path).read()
    for name, lines in (("TILINGS", table), ("DEQUANT_TILINGS", dequant_table)):
        head = source.index(f"\n{name}: ")
        start = source.index("{", head) + 1
        end = source.index("}\n", start)
        entries = {line.split(": ")[0]: line for line in source[start:end].strip("\n").split("\n")}
        entries.update({line.split(": ")[0]: line for line in lines})
        source = source[:start] + "\n" + "\n".join(entries.values()) + "\n" + source[end:]
    with open(path, "w") as f:
        f.write(source)


def sweep_dequant(type_name: str, n_rows: int, n_cols: int) -> list[dict]:
    """Time of dequantize_packed to bf16 with every tiling of DEQUANT_SWEEP, fastest first;
    GB/s counts the planes read and the bf16 written."""
    raw = random_gguf(type_name, n_rows, n_cols)
    packed = repack(raw, Q[type_name], n_rows, n_cols)
    expected = dequantize_to(raw, Q[type_name], torch.bfloat16)
    results = []
    for block_u, num_warps in itertools.product(DEQUANT_SWEEP["block_u"], DEQUANT_SWEEP["num_warps"]):
        tiling = DequantTiling(block_u, num_warps)
        if relative_error(dequantize_packed(packed, torch.bfloat16, tiling), expected.float()) > 1e-2:
            raise SystemExit(f"dequant {type_name} {tiling}: wrong result")
        us = median_us(lambda: dequantize_packed(packed, torch.bfloat16, tiling))
        gbps = (packed.nbytes + n_rows * n_cols * 2) / (us * 1e-6) / 1e9
        results.append({"tiling": tiling, "us": us, "gbps": gbps})
    del raw, packed, expected
    torch.cuda.empty_cache()
    return sorted(results, key=lambda r: r["us"])


def sweep_dense() -> DenseTiling:
    """Batch-1 time of `dense_gemv` with every tiling of DENSE_SWEEP on each shape, beside
    cuBLAS (F.linear), all in CUDA graphs; prints and returns the tiling of least total time."""
    totals: dict[DenseTiling, float] = {}
    for n_rows, n_cols in DENSE_SWEEP["shapes"]:
        weight = torch.randn(n_rows, n_cols, device="cuda", dtype=torch.bfloat16)
        weights = [weight] + [weight.clone() for _ in range(copies_to_defeat_l2(weight.nbytes) - 1)]
        x = torch.randn(1, n_cols, device="cuda", dtype=torch.bfloat16)
        cublas_us = graph_us([lambda w=w: F.linear(x, w) for w in weights])
        timings = []
        for tile in DENSE_SWEEP["tiles"]:
            tiling = DenseTiling(*tile)
            if relative_error(dense_gemv(x, weight, tiling), F.linear(x.float(), weight.float())) > 1e-2:
                raise SystemExit(f"dense {tiling}: wrong result")
            us = graph_us([lambda w=w, t=tiling: dense_gemv(x, w, t) for w in weights])
            totals[tiling] = totals.get(tiling, 0.0) + us
            timings.append((us, tiling))
        us, best = min(timings, key=lambda t: t[0])
        gbps = weight.nbytes / (us * 1e-6) / 1e9
        print(f"dense {n_rows:>6}x{n_cols:<6} best {us:7.1f} us {gbps:6.0f} GB/s {best}; "
              f"cuBLAS {cublas_us:7.1f} us {weight.nbytes / (cublas_us * 1e-6) / 1e9:6.0f} GB/s")
        del weight, weights
        torch.cuda.empty_cache()
    best = min(totals, key=lambda t: totals[t])
    print(f"DENSE_TILING = {best!r} (least total time)")
    return best


def apply_dense_tiling(path: str, tiling: DenseTiling) -> None:
    source = open(path).read()
    start = source.index("\nDENSE_TILING = ") + 1
    end = source.index("\n", start)
    with open(path, "w") as f:
        f.write(source[:start] + f"DENSE_TILING = {tiling!r}" + source[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_gemv.json", help="where to write the results as JSON")
    parser.add_argument("--types", default="", help="comma-separated GGUF types (default: all, or with --sweep those of TILING_SWEEP)")
    parser.add_argument("--shapes", default="", help="comma-separated ROWSxCOLS (default: the built-in set)")
    parser.add_argument("--sweep", action="store_true", help="time a grid of batch-1 tilings instead (TILING_SWEEP)")
    parser.add_argument("--apply", action="store_true", help="with --sweep: write the best tilings into gemv.py")
    parser.add_argument("--dequant-only", action="store_true", help="with --sweep: only the dequantization tilings")
    parser.add_argument("--dense-only", action="store_true", help="with --sweep: only the dense (bf16) GEMV tiling")
    args = parser.parse_args()
    started = time.time()
    device = torch.cuda.get_device_name()
    copy_gbps = copy_bandwidth()
    print(f"{device}: device-to-device copy {copy_gbps:.0f} GB/s (read + write)")
    if args.sweep and args.dense_only:
        tiling = sweep_dense()
        if args.apply:
            apply_dense_tiling(dense_module.__file__, tiling)
            print(f"written into {dense_module.__file__}")
        return
    if args.sweep:
        sweeps, table, dequant_table = sweep(args.types.split(",") if args.types else TILING_SWEEP["types"],
                                             gemv_too=not args.dequant_only)
        with open(args.out, "w") as f:
            json.dump({"device": device, "copy_gbps": copy_gbps, "sweeps": sweeps}, f, indent=1)
        if args.apply:
            apply_tables(gemv_module.__file__, table, dequant_table)
            print(f"written into {gemv_module.__file__}")
        print(f"{time.time() - started:.0f} s; in {args.out}")
        return

    types = args.types.split(",") if args.types else TYPES
    if args.shapes:
        shapes = [("custom", tuple(int(v) for v in s.split("x"))) for s in args.shapes.split(",")]
    else:
        shapes = [(model, shape) for model, model_shapes in SHAPES.items() for shape in model_shapes]
    cases: list[tuple[str, str, int, int, int]] = [(m, t, n, k, 1) for m, (n, k) in shapes for t in types]
    if not args.shapes:
        cases += [
            ("batch", t, n, k, b)
            for t in BATCH_SWEEP["types"] if t in types
            for n, k in BATCH_SWEEP["shapes"] for b in BATCH_SWEEP["batches"]
        ]  # fmt: skip
    results, bf16 = [], {}
    for model, type_name, n_rows, n_cols, batch in cases:
        if (n_rows, n_cols, batch) not in bf16:
            bf16[n_rows, n_cols, batch] = bench_bf16(n_rows, n_cols, batch)
        case = {"model": model, **bench_case(type_name, n_rows, n_cols, batch), **bf16[n_rows, n_cols, batch]}
        results.append(case)
        label = f"{model:6} {type_name:5} {n_rows:>6}x{n_cols:<6} m={batch}"
        print(f"{label} {case['graph_us']:8.1f} us {case['gbps']:6.0f} GB/s")

    with open(args.out, "w") as f:
        json.dump({"device": device, "copy_gbps": copy_gbps, "results": results}, f, indent=1)
    print(
        f"\n{'model':6} {'type':5} {'rows x cols':>13} {'m':>2} {'do_bench':>9} {'graph':>8} {'GB/s':>6} "
        f"{'%copy':>6} {'bf16':>8} {'x bf16':>6} {'rel err':>8} {'dequant':>8} {'GB/s':>6}"
    )
    for r in results:
        print(
            f"{r['model']:6} {r['type']:5} {r['rows']:>6}x{r['cols']:<6} {r['batch']:>2} {r['us']:8.1f}u "
            f"{r['graph_us']:7.1f}u {r['gbps']:6.0f} {100 * r['gbps'] / copy_gbps:5.0f}% "
            f"{r['bf16_graph_us']:7.1f}u {r['bf16_graph_us'] / r['graph_us']:6.2f} {r['rel_err']:8.1e} "
            f"{r['dequant_us']:7.1f}u {r['dequant_gbps']:6.0f}"
        )
    worst = max(max(r["rel_err"] for r in results), max(r["dequant_rel_err"] for r in results))
    verdict = "OK" if worst < 1e-2 else "TOO LARGE"
    print(f"\nworst relative error {worst:.1e} ({verdict}); graph: per call in a CUDA graph; x bf16: bf16")
    print("cuBLAS graph time / gemv graph time; dequant GB/s: planes read + bf16 written")
    print(f"{time.time() - started:.0f} s; in {args.out}")


if __name__ == "__main__":
    main()
