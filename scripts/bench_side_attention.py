"""Could a layer's KV cache be read beside the weights' GEMVs? A model of 8B decode at depth on one GPU.

Each of 8 layers (--layers) runs the GEMVs of a Llama 3 8B layer on Q4_0 weights (QKV, O, gate/up, down:
`gemv`, in a CUDA graph), with a small "query ready" kernel after the QKV GEMV where RoPE runs,
and a stand-in for attention that reads the layer's 8192 positions of bf16 keys and values (8 KV
heads, 33.6 MB) and sums them. Timed per layer:

- `gemvs`: no attention (what depth 0 costs, near enough);
- `in turn`: the read between the "query ready" kernel and the O GEMV, as decode attention runs now;
- `beside, R rows`: the read on a second stream, one program a multiprocessor, launched when the
  previous layer's read ends, so that it runs beside the previous layer's O and MLP GEMVs and this
  layer's QKV GEMV. Each program loads its first R rows of 128 values into registers, spins until
  the "query ready" flag is set, then reads the rest of its share; the O GEMV waits for it. Also
  timed reading only the rows held: what waiting beside the GEMVs costs them (also with 1 and 4
  warps a program, nothing held); and with a kernel that neither reads nor waits: what the second
  stream and the join cost.

What `in turn` adds over `gemvs` is what attention costs at depth now; what `beside` adds is what
it could cost if its first reads went beside the GEMVs. The target lets one layer add 6.4 us
(1 GPU, bf16 cache, H200).

    python scripts/bench_side_attention.py [--rows 0,128,256] [--layers 8] [--depth 8192]
    python scripts/bench_side_attention.py --registers [--rows 0,128,256]   (no GPU needed: ptxas's count
        for sm_90 of the read kernel as the second stream launches it)
    python scripts/bench_side_attention.py --profile [--layers 32]   (where waiting beside goes: each
        kernel's time and the time no GEMV runs, from the profiler, for the modes that read nothing)
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl
from attention_shared_memory import registers
from bench_gemv import copy_bandwidth, random_gguf
from gguf.constants import GGMLQuantizationType
from triton.backends.compiler import GPUTarget
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from triton.compiler import ASTSource

from llamatp.quant.gemv import gemv, quantize_rows, repack, sm_count

HEAD_DIM = 128
SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}


@triton.jit
def _read_kernel(kv_ptr, flag_ptr, out_ptr, rows_per_program, HELD: tl.constexpr, BLOCK: tl.constexpr,
                 D: tl.constexpr, WAIT: tl.constexpr, REST: tl.constexpr):
    """Sums a program's share of rows: HELD rows loaded before the wait for the flag, the rest
    after (none without REST). The wait reads the flag with a pause of about 0.5 us between
    reads, to leave the GEMVs beside it the issue slots and L2 requests."""
    pid = tl.program_id(0)
    base = kv_ptr + pid.to(tl.int64) * rows_per_program * D
    d = tl.arange(0, D)
    acc = tl.zeros([D], tl.float32)
    if HELD > 0:
        held = tl.load(base + tl.arange(0, HELD)[:, None] * D + d[None, :])
    if WAIT:
        while tl.load(flag_ptr, volatile=True) == 0:
            tl.inline_asm_elementwise("nanosleep.u32 500; mov.u32 $0, 0;", "=r", [], dtype=tl.int32, is_pure=False,
                                      pack=1)
    if HELD > 0:
        acc += tl.sum(held.to(tl.float32), axis=0)
    for start in range(HELD, rows_per_program if REST else HELD, BLOCK):
        rows = start + tl.arange(0, BLOCK)
        block = tl.load(base + rows[:, None] * D + d[None, :], mask=(rows < rows_per_program)[:, None], other=0.0)
        acc += tl.sum(block.to(tl.float32), axis=0)
    tl.store(out_ptr + pid * D + d, acc)


@triton.jit
def _set_flag_kernel(flag_ptr):
    tl.store(flag_ptr, 1)


class Layers:
    """The layers' weights, caches and flags on the GPU, and the calls of one decode step."""

    def __init__(self, n_layers: int, depth: int, n_kv: int = 8) -> None:
        q4 = GGMLQuantizationType.Q4_0
        self.weights = [{name: repack(random_gguf("Q4_0", *shape), q4, *shape) for name, shape in SHAPES.items()}
                        for _ in range(n_layers)]
        self.n_sm = sm_count(torch.device("cuda"))
        rows = n_kv * depth * 2  # keys and values, one row of HEAD_DIM a position and head
        self.rows_per_program = triton.cdiv(rows, self.n_sm)
        self.caches = [torch.randn(self.n_sm * self.rows_per_program, HEAD_DIM, device="cuda",
                                   dtype=torch.bfloat16) for _ in range(n_layers)]
        self.cache_bytes = rows * HEAD_DIM * 2
        self.flags = torch.zeros(n_layers, dtype=torch.int32, device="cuda")
        self.sums = torch.empty(self.n_sm, HEAD_DIM, device="cuda")
        self.x = {n: torch.randn(1, shape[1], device="cuda", dtype=torch.bfloat16) for n, shape in SHAPES.items()}
        self.rounded = {n: quantize_rows(x) for n, x in self.x.items()}

    def gemv(self, layer: int, name: str) -> None:
        gemv(self.x[name], self.weights[layer][name], rounded=self.rounded[name])

    def read(self, layer: int, held: int, wait: bool, rest: bool = True, num_warps: int = 8) -> None:
        # 8 warps, 64 KB a step: enough bytes in flight for the copy bandwidth at one program a
        # multiprocessor, at 119-194 registers a thread (`--registers`), leaving
        # the GEMVs' programs room beside it.
        _read_kernel[(self.n_sm,)](self.caches[layer], self.flags[layer:], self.sums, self.rows_per_program,
                                   HELD=held, BLOCK=256, D=HEAD_DIM, WAIT=wait, REST=rest,
                                   num_warps=num_warps)

    def query_ready(self, layer: int) -> None:
        _set_flag_kernel[(1,)](self.flags[layer:])

    def step(self, mode: str, held: int = 0, rest: bool = True, wait: bool = True, num_warps: int = 8,
             side: torch.cuda.Stream | None = None) -> None:
        main = torch.cuda.current_stream()
        if side is not None:
            side.wait_stream(main)
        for layer in range(len(self.weights)):
            if mode == "beside":
                with torch.cuda.stream(side):
                    self.read(layer, held, wait=wait, rest=rest, num_warps=num_warps)
                read_done = side.record_event()
            self.gemv(layer, "qkv")
            self.query_ready(layer)
            if mode == "in turn":
                self.read(layer, 0, wait=False)
            elif mode == "beside":
                main.wait_event(read_done)
            for name in ("o", "gate_up", "down"):
                self.gemv(layer, name)
        if side is not None:
            main.wait_stream(side)


def capture(layers: Layers, **step_args: object) -> torch.cuda.CUDAGraph:
    """The step as one CUDA graph, its kernels compiled before the capture."""
    side = torch.cuda.Stream() if step_args.get("mode") == "beside" else None
    layers.flags.fill_(1)
    layers.step(**step_args, side=side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        layers.step(**step_args, side=side)
    return graph


def replay(layers: Layers, graph: torch.cuda.CUDAGraph) -> float:
    """Microseconds a layer of one replay, the flags cleared before it."""
    layers.flags.zero_()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / len(layers.weights)


def time_step(layers: Layers, replays: int = 20, **step_args: object) -> float:
    """Microseconds a layer, the step captured as one CUDA graph (median of the replays)."""
    graph = capture(layers, **step_args)
    times = [replay(layers, graph) for _ in range(replays + 1)]
    return sorted(times[1:])[replays // 2]


def union_us(intervals: list[tuple[float, float]]) -> float:
    """Microseconds covered by at least one of the (start, end) intervals."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered


def kernel_profile(layers: Layers, replays: int = 5, **step_args: object) -> dict[str, float]:
    """Microseconds a layer, from the profiler's kernel records of `replays` replays: what each
    GEMV adds (from the end of the GEMV before it to its own end: these add up to the step), the
    read kernel's own time, and the time no GEMV runs."""
    graph = capture(layers, **step_args)
    replay(layers, graph)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            replay(layers, graph)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    gemvs = sorted((e.time_range.start, e.time_range.end) for e in kernels if "gemv" in e.name)
    per_replay = len(layers.weights) * len(SHAPES)
    if len(gemvs) != replays * per_replay:
        raise SystemExit(f"the profiler recorded {len(gemvs)} GEMVs, not {replays * per_replay}")
    n = replays * (len(layers.weights) - 1)  # the first layer of a replay has no GEMV before it
    times = dict.fromkeys((f"{name} GEMV" for name in SHAPES), 0.0)
    idle = 0.0
    for first in range(0, len(gemvs), per_replay):
        ones = gemvs[first:first + per_replay]
        for i in range(len(SHAPES), per_replay):
            times[f"{list(SHAPES)[i % len(SHAPES)]} GEMV"] += (ones[i][1] - ones[i - 1][1]) / n
        idle += max(end for _, end in ones) - ones[0][0] - union_us(ones)
    layers_run = replays * len(layers.weights)
    times["read kernel"] = sum(e.time_range.elapsed_us() for e in kernels if "read" in e.name) / layers_run
    times["no GEMV running"] = idle / layers_run
    return times


def print_profiles(layers: Layers) -> None:
    """What the waiting beside the GEMVs costs, kernel by kernel: whether the GEMVs slow or
    the step waits between them."""
    modes = {"gemvs": {"mode": "gemvs"},
             "an empty kernel joined": {"mode": "beside", "rest": False, "wait": False},
             "1 warp a multiprocessor waiting": {"mode": "beside", "rest": False, "num_warps": 1},
             "8 warps a multiprocessor waiting": {"mode": "beside", "rest": False, "num_warps": 8}}
    profiles = {label: kernel_profile(layers, **args) for label, args in modes.items()}
    columns = list(next(iter(profiles.values())))
    print(f"{'us a layer (profiler)':34}" + "".join(f"{c:>17}" for c in columns))
    for label, times in profiles.items():
        print(f"{label:34}" + "".join(f"{times[c]:17.2f}" for c in columns))


def check_read(layers: Layers, held: int) -> None:
    """The read kernel sums every row of its share, held or not."""
    layers.flags.fill_(1)
    layers.read(0, held, wait=True)
    ref = layers.caches[0].float().view(layers.n_sm, layers.rows_per_program, HEAD_DIM).sum(1)
    error = float((layers.sums - ref).norm() / ref.norm())
    if error > 1e-4:
        raise SystemExit(f"the read kernel holding {held} rows sums wrongly: relative error {error:.2e}")


def print_registers(rows: list[int]) -> None:
    signature = {"kv_ptr": "*bf16", "flag_ptr": "*i32", "out_ptr": "*fp32", "rows_per_program": "i32"}
    for held in rows:
        consts = {"HELD": held, "BLOCK": 256, "D": HEAD_DIM, "WAIT": True, "REST": True}
        compiled = triton.compile(ASTSource(fn=_read_kernel, signature=signature | dict.fromkeys(consts, "constexpr"),
                                            constexprs=consts),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
        print(f"read kernel, {held} rows held, 8 warps{registers(compiled, 90)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="0,128,256", help="rows a program loads before its wait")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--depth", type=int, default=8192)
    parser.add_argument("--registers", action="store_true", help="only count the read kernel's registers")
    parser.add_argument("--profile", action="store_true", help="only profile the modes that read nothing")
    args = parser.parse_args()
    if args.registers:
        print_registers([int(r) for r in args.rows.split(",")])
        return
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {copy_bandwidth():.0f} GB/s (read + write)")
    layers = Layers(args.layers, args.depth)
    if args.profile:
        print_profiles(layers)
        return
    mb = layers.cache_bytes / 1e6
    gemvs = time_step(layers, mode="gemvs")
    in_turn = time_step(layers, mode="in turn")
    print(f"gemvs {gemvs:.2f} us a layer")
    print(f"in turn {in_turn:.2f} us a layer: the read of {mb:.1f} MB adds {in_turn - gemvs:.2f} us", flush=True)
    joined = time_step(layers, mode="beside", rest=False, wait=False)
    print(f"beside, an empty kernel joined before the O GEMV: adds {joined - gemvs:.2f} us", flush=True)
    for num_warps in (1, 4):
        waiting = time_step(layers, mode="beside", rest=False, num_warps=num_warps)
        print(f"beside, a program a multiprocessor of {num_warps} warps waiting, nothing read: "
              f"adds {waiting - gemvs:.2f} us", flush=True)
    for held in map(int, args.rows.split(",")):
        check_read(layers, held)
        beside = time_step(layers, mode="beside", held=held)
        held_mb = held * HEAD_DIM * 2 * layers.n_sm / 1e6
        held_only = time_step(layers, mode="beside", held=held, rest=False)
        print(f"beside, {held} rows held ({held_mb:.1f} MB): {beside:.2f} us a layer, adds {beside - gemvs:.2f} us; "
              f"reading only the rows held {held_only - gemvs:.2f} us", flush=True)
    print(f"gemvs again {time_step(layers, mode='gemvs'):.2f} us a layer")


if __name__ == "__main__":
    main()
