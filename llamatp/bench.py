"""`llamatp bench`: llama-bench's tests, timing and output formats.

Every combination of the flags' values is one test: a prompt test (pp), a generation test
(tg) or both (pp+tg), at some depth. Tests that share a loaded model (same file, devices,
split, batch sizes) run in one launch; the model is loaded once, with the largest context
any of them needs. A test at depth d starts at position d with the first d positions of
the KV cache already filled (untimed); every repetition starts there again.
"""

from __future__ import annotations

import csv
import functools
import gc
import io
import itertools
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, cast

import torch
import torch.distributed as dist
from gguf import LlamaFileType
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llamatp.cache_types import check_cache_type
from llamatp.cli import check_flash_attn, check_load_mode, parse_tensor_split, resolve_devices, resolve_model
from llamatp.comm import Comm
from llamatp.config import ModelConfig, load_config
from llamatp.engine import Engine
from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.launch import WorkerInfo, launch
from llamatp.plan import Plan
from llamatp.runtime import ModelOptions, check_host_memory, open_runtime
from llamatp.tokenizer import Tokenizer

OUTPUT_FORMATS = ("md", "csv", "json", "jsonl", "sql", "none")
MAX_LIST_VALUES = 1000  # of one list or range of -p, -n, -d, -b, ...
_RANGE = re.compile(r"(-?\d+)(?:-(\d+)(?:([+*])(\d+))?)?(?:,|$)")


# --- flags -------------------------------------------------------------------------------------


def parse_int_range(text: str, allow_negative: bool = False) -> list[int]:
    """llama-bench's lists: '128,512', 'first-last' (step 1), 'first-last+step', 'first-last*factor'."""
    values: list[int] = []
    at = 0
    while at < len(text):
        match = _RANGE.match(text, at)
        if match is None or (match[1].startswith("-") and not allow_negative):
            raise LlamatpError(f"malformed list or range '{text}' (examples: 128,512 or 16-64*2 or 1-5+2)")
        first, last = int(match[1]), int(match[2] or match[1])
        op, step = match[3] or "+", int(match[4] or 1)
        i = first
        while i <= last:
            if len(values) == MAX_LIST_VALUES:
                raise LlamatpError(f"'{text}' gives more than {MAX_LIST_VALUES} values")
            values.append(i)
            following = i + step if op == "+" else i * step
            if following <= i:
                raise LlamatpError(f"range '{match[0].rstrip(',')}' does not increase")
            i = following
        at = match.end()
    if not values:
        raise LlamatpError(f"'{text}' gives no values")
    return values


def parse_pair(text: str) -> tuple[int, int]:
    """-pg's 'pp,tg'."""
    match = re.fullmatch(r"(\d+),(\d+)", text.strip())
    if match is None:
        raise LlamatpError(f"-pg takes two numbers 'pp,tg', got '{text}'")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class BenchParams:
    """The parsed flags: a list of values for each test parameter."""

    models: tuple[str, ...]
    n_prompt: tuple[int, ...] = (512,)
    n_gen: tuple[int, ...] = (128,)
    n_pg: tuple[tuple[int, int], ...] = ()
    n_depth: tuple[int, ...] = (0,)
    n_batch: tuple[int, ...] = (2048,)
    n_ubatch: tuple[int, ...] = (512,)
    n_gpu_layers: tuple[int, ...] = (99,)
    split_mode: tuple[str, ...] = ("layer",)
    main_gpu: tuple[int, ...] = (0,)
    tensor_split: tuple[tuple[float, ...], ...] = ((),)
    type_k: tuple[str | None, ...] = (None,)  # None: the compute type
    type_v: tuple[str | None, ...] = (None,)
    flash_attn: tuple[int, ...] = (-1,)  # llama-bench's: 1 on, -1 auto
    n_threads: tuple[int, ...] = (0,)  # <= 0: the cores shared out among CPU workers
    load_mode: tuple[str, ...] = ("mmap",)
    device: str | None = None
    repetitions: int = 5
    warmup: bool = True
    output: str = "md"
    output_err: str = "none"  # a second format, on stderr
    delay: int = 0  # seconds to cool off before each test
    progress: bool = False  # a line on stderr per step, as llama-bench's --progress


# llama-bench flags whose one setting in llamatp is their 0, and why no other is.
FIXED_FLAGS = {
    "-nkvo": "the KV cache always stays on each worker's device",
    "-ncmoe": "no expert weights are kept on the CPU",
    "-nopo": "every op runs on the device that holds its weights",
    "-embd": "the tests generate text; there is no embeddings mode",
}


def bench_params(models: Sequence[str], n_prompt: Sequence[str], n_gen: Sequence[str], n_pg: Sequence[str],
                 n_depth: Sequence[str], n_batch: Sequence[str], n_ubatch: Sequence[str],
                 n_gpu_layers: Sequence[str], split_mode: Sequence[str], main_gpu: Sequence[str],
                 tensor_split: Sequence[str], type_k: Sequence[str], type_v: Sequence[str], device: str | None,
                 repetitions: int, warmup: bool, output: str, flash_attn: Sequence[str] = (),
                 n_threads: Sequence[str] = (), load_mode: Sequence[str] = (), mmap: Sequence[str] = (),
                 direct_io: Sequence[str] = (), delay: int = 0, progress: bool = False,
                 output_err: str = "none", fixed: Mapping[str, Sequence[str]] | None = None) -> BenchParams:
    """Flags as typed (each repeatable, each a comma list) to BenchParams; unset ones keep the defaults.
    `fixed`: llama-bench flags whose setting llamatp always has, 0 (as -nkvo 0), by flag."""

    def ints(values: Sequence[str], allow_negative: bool = False) -> tuple[int, ...]:
        return tuple(v for text in values for v in parse_int_range(text, allow_negative))

    def items(values: Sequence[str]) -> list[str]:
        return [item.strip() for text in values for item in text.split(",")]

    for flag, values in (fixed or {}).items():
        if any(v != "0" for v in items(values)):
            raise LlamatpError(f"{flag} {','.join(values)}: only 0 is supported ({FIXED_FLAGS[flag]})")
    if repetitions < 1:
        raise LlamatpError(f"-r must be at least 1, got {repetitions}")
    if delay < 0:
        raise LlamatpError(f"--delay must be 0 or more seconds, got {delay}")
    for flag, fmt in (("-o", output), ("-oe", output_err)):
        if fmt not in OUTPUT_FORMATS:
            raise LlamatpError(f"{flag}: unknown output format '{fmt}' (use {', '.join(OUTPUT_FORMATS)})")
    given = {
        "models": tuple(resolve_model(m) for m in items(models)) or (resolve_model(None),),
        "n_prompt": ints(n_prompt), "n_gen": ints(n_gen), "n_pg": tuple(parse_pair(p) for p in n_pg),
        "n_depth": ints(n_depth), "n_batch": ints(n_batch), "n_ubatch": ints(n_ubatch),
        "n_gpu_layers": ints(n_gpu_layers, allow_negative=True), "split_mode": tuple(items(split_mode)),
        "main_gpu": ints(main_gpu),
        "tensor_split": tuple(parse_tensor_split(ts.replace(";", "/"), "/") for ts in items(tensor_split)),
        "type_k": tuple(check_cache_type(t, "-ctk") for t in items(type_k)),
        "type_v": tuple(check_cache_type(t, "-ctv") for t in items(type_v)),
        "flash_attn": tuple(check_flash_attn(v) for v in items(flash_attn)),
        "n_threads": ints(n_threads, allow_negative=True),
        "load_mode": tuple(check_load_mode(v) for v in items(load_mode))
        + tuple(_older_load_mode(v, "-mmp", "mmap") for v in items(mmap))
        + tuple(_older_load_mode(v, "-dio", "dio") for v in items(direct_io)),
    }
    if any(v < 1 for v in given["n_batch"] + given["n_ubatch"]):
        raise LlamatpError("-b and -ub must be at least 1")
    params = BenchParams(**{key: value for key, value in given.items() if value})  # type: ignore[arg-type]
    return replace(params, device=device, repetitions=repetitions, warmup=warmup, output=output,
                   output_err=output_err, delay=delay, progress=progress)


def _older_load_mode(value: str, flag: str, mode: str) -> str:
    """llama-bench's older -mmp 0|1 and -dio 0|1 as load modes: 1 is `mode`, 0 none."""
    if value not in ("0", "1"):
        raise LlamatpError(f"{flag} takes 0 or 1, got '{value}'")
    return mode if value == "1" else "none"


# --- tests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchTest:
    """One combination of the flags' values: what llama-bench calls an instance."""

    model: str
    n_prompt: int
    n_gen: int
    n_depth: int
    n_batch: int
    n_ubatch: int
    n_gpu_layers: int
    split_mode: str
    main_gpu: int
    tensor_split: tuple[float, ...]
    devices: tuple[str, ...]
    type_k: str | None = None
    type_v: str | None = None
    flash_attn: int = -1
    n_threads: int = 0
    load_mode: str = "mmap"

    @property
    def name(self) -> str:
        if self.n_gen == 0:
            name = f"pp{self.n_prompt}"
        elif self.n_prompt == 0:
            name = f"tg{self.n_gen}"
        else:
            name = f"pp{self.n_prompt}+tg{self.n_gen}"
        return name + (f" @ d{self.n_depth}" if self.n_depth > 0 else "")

    @property
    def n_ctx(self) -> int:
        return self.n_prompt + self.n_gen + self.n_depth

    @property
    def load_key(self) -> tuple[object, ...]:
        """Tests with equal keys share one loaded model."""
        return (self.model, self.n_gpu_layers, self.split_mode, self.main_gpu, self.devices, self.tensor_split,
                self.n_batch, self.n_ubatch, self.type_k, self.type_v, self.n_threads, self.load_mode)


def bench_tests(params: BenchParams) -> list[BenchTest]:
    """Every combination, in llama-bench's order (model outermost, then loading parameters, so
    that tests sharing a model are adjacent). Zero-length pp or tg entries are skipped."""
    device = params.device.replace("/", ",") if params.device else None  # llama-bench writes CUDA0/CUDA1
    tests = []
    for model, nt, ngl, sm, lm, mg, ts, nb, nub, tk, tv, fa, depth in itertools.product(
        params.models, params.n_threads, params.n_gpu_layers, params.split_mode, params.load_mode, params.main_gpu,
        params.tensor_split, params.n_batch, params.n_ubatch, params.type_k, params.type_v, params.flash_attn,
        params.n_depth,
    ):
        devices = tuple(resolve_devices(device, sm, mg, str(ngl)))  # also rejects unknown split modes
        if sm != "none" and len(ts) > len(devices):
            raise LlamatpError(f"-ts {'/'.join(f'{v:g}' for v in ts)} has {len(ts)} entries but there are only "
                               f"{len(devices)} devices")
        shapes = [(p, 0) for p in params.n_prompt if p > 0] + [(0, n) for n in params.n_gen if n > 0]
        shapes += [pg for pg in params.n_pg if pg != (0, 0)]
        tests += [BenchTest(model, p, n, depth, nb, nub, ngl, sm, mg, ts, devices, tk, tv, fa, nt, lm)
                  for p, n in shapes]
    return tests


def check_gpu_layers(tests: list[BenchTest], n_layers: dict[str, int]) -> None:
    """Layers live on the GPUs or on the CPU, never some of each."""
    for t in tests:
        if t.devices[0] != "cpu" and 0 < t.n_gpu_layers < n_layers[t.model]:
            raise LlamatpError(f"-ngl {t.n_gpu_layers} would offload part of {Path(t.model).name} "
                               f"({n_layers[t.model]} layers); use -ngl 0 (CPU) or -ngl 99 (all layers)")


# --- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchGroup:
    """Tests that run on one loaded model, in one launch, as `params` ask (repetitions, warm-up,
    delay, progress); `first` is the number of the first of them among all `total` tests."""

    options: ModelOptions
    tests: tuple[BenchTest, ...]
    params: BenchParams
    first: int = 1
    total: int = 1


@dataclass
class Measurement:
    test: BenchTest
    test_time: str
    samples_ns: list[int]
    peak_mem_bytes: list[int]  # one per device
    n_threads: int
    cache_types: tuple[str, str]  # of K and V, as the run resolved them
    decode_weight_bytes: int  # weight bytes that all devices together read for one generated token


def group_of(tests: Sequence[BenchTest], params: BenchParams, first: int = 1, total: int = 1) -> BenchGroup:
    t = tests[0]
    options = ModelOptions(
        model=t.model, devices=t.devices, split_mode=t.split_mode if len(t.devices) > 1 else "none",  # type: ignore[arg-type]
        n_ctx=max(x.n_ctx for x in tests), n_batch=t.n_batch, n_ubatch=min(t.n_ubatch, t.n_batch),
        tensor_split=t.tensor_split if t.split_mode != "none" else (), cache_type_k=t.type_k, cache_type_v=t.type_v,
        n_threads=t.n_threads, load_mode=t.load_mode,
    )
    return BenchGroup(options, tuple(tests), params, first, total)


class BenchRunner:
    """Runs tests on one loaded model. Depth fills are prefixes of one fixed random sequence,
    so the cache prefix a previous test left in place is reused rather than filled again."""

    def __init__(self, engine: Engine, comm: Comm, n_vocab: int, bos: int | None, sync: Callable[[], None]) -> None:
        self.engine, self.comm, self.sync = engine, comm, sync
        self.n_vocab, self.bos = n_vocab, bos
        self.filled = 0  # positions [0, filled) hold the depth sequence

    def tokens(self, n: int, seed: int) -> list[int]:
        """Random ids, the same on every rank; the first is BOS where the model adds one."""
        rng = random.Random(seed)
        tokens = [rng.randrange(self.n_vocab) for _ in range(n)]
        if tokens and self.bos is not None:
            tokens[0] = self.bos
        return tokens

    def use_context(self, n_ctx: int) -> None:
        """As llama-bench, each test runs in a context of its own size (an empty one when it changes)."""
        if n_ctx != self.engine.n_ctx:
            self.engine.set_context(n_ctx)
            self.filled = 0

    def fill(self, depth: int, n_batch: int) -> None:
        if self.filled < depth:
            self._prompt(self.tokens(depth, seed=0)[self.filled:], self.filled, n_batch, repeated=False)
            self.sync()
            self.filled = depth

    def run(self, test: BenchTest, n_prompt: int, n_gen: int) -> None:
        """One pass from position n_depth: the prompt in batches of n_batch, then tokens one at a time."""
        self.filled = min(self.filled, test.n_depth)
        pos = test.n_depth
        if n_prompt:
            self._prompt(self.tokens(n_prompt, seed=1), pos, test.n_batch, repeated=True)
            pos += n_prompt
        for token in self.tokens(n_gen, seed=2):
            self.engine.decode(token, pos)
            pos += 1
        self.sync()

    def measure(self, test: BenchTest, repetitions: int, warmup: bool,
                show: Callable[[str, int], None]) -> list[int]:
        """Nanoseconds of each repetition; the depth fill and the warm-up are not timed."""
        if test.n_depth:
            show("filling the context", 0)
            self.fill(test.n_depth, test.n_batch)
        if warmup:  # as llama-bench: the whole prompt, one generated token
            show("warm-up", 0)
            self.run(test, test.n_prompt, min(test.n_gen, 1))
        samples = []
        for i in range(repetitions):
            show(f"repetition {i + 1}/{repetitions}", i)
            self.comm.barrier()
            start = time.perf_counter_ns()
            self.run(test, test.n_prompt, test.n_gen)
            samples.append(time.perf_counter_ns() - start)
        show("done", repetitions)
        return samples

    def _prompt(self, tokens: list[int], start: int, n_batch: int, repeated: bool) -> None:
        for i in range(0, len(tokens), n_batch):
            self.engine.forward(tokens[i : i + n_batch], start + i, repeated=repeated)


def group_job(group: BenchGroup, info: WorkerInfo) -> list[Measurement]:
    """One rank's part of a group. Afterwards the model is freed and the process group left,
    so that the next launch (on this process, as rank 0) starts clean."""
    results = _measure_group(group, info)
    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()
    if info.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return results


def _measure_group(group: BenchGroup, info: WorkerInfo) -> list[Measurement]:
    """Load, run each test, gather every rank's peak memory; a live display on rank 0."""
    console = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=info.rank != 0 or not console.is_terminal,
        redirect_stdout=False, redirect_stderr=False,
    )
    with progress:
        task = progress.add_task(f"loading {Path(group.options.model).name}", total=None)
        rt = open_runtime(group.options, info)
        tokenizer = Tokenizer.from_metadata(rt.gguf.metadata)
        bos = tokenizer.bos_id if tokenizer.add_bos else None
        runner = BenchRunner(rt.engine, rt.comm, rt.config.n_vocab, bos, rt.engine.synchronize)
        results = []
        for number, test in enumerate(group.tests, group.first):
            label = f"{test.name} (sm {test.split_mode}, {devices_label(test.devices)})"

            def show(step: str, done: int, label: str = label, number: int = number) -> None:
                progress.update(task, description=f"{label}: {step}", completed=done, total=group.params.repetitions)
                if group.params.progress and info.rank == 0:
                    print(f"llamatp bench: benchmark {number}/{group.total}: {label}: {step}", file=sys.stderr,
                          flush=True)

            if group.params.delay:
                time.sleep(group.params.delay)

            runner.use_context(test.n_ctx)
            test_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            _reset_peak_memory(rt.device)
            samples = runner.measure(test, group.params.repetitions, group.params.warmup, show)
            peaks = cast(list[int], rt.comm.gather_object(_peak_memory(rt.device)))
            results.append(Measurement(test, test_time, samples, peaks, torch.get_num_threads(), rt.plan.cache_types,
                                       decode_weight_bytes(rt.plan, rt.gguf, rt.config)))
        rt.comm.barrier()
    return results


def decode_weight_bytes(plan: Plan, gguf: GGUFFile, config: ModelConfig) -> int:
    """Bytes of weights that all devices together read per generated token: every shard's
    weights, less the input embedding where a shard only looks a row up in it (where it is
    not also the output head)."""
    embedding = gguf.tensors["token_embd.weight"].nbytes
    total = 0
    for shard in plan.shards:
        total += shard.weight_bytes
        if shard.has_embedding and not (config.tied_embeddings and shard.has_output):
            total -= embedding * len(shard.vocab) // config.n_vocab
    return total


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the process's peak resident size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory(device: torch.device) -> int:
    """Bytes: the most allocated on the GPU, or the process's peak resident size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    status = Path("/proc/self/status")
    found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text()) if status.exists() else None
    if found:
        return int(found[1]) * 1024
    import resource  # not on Windows; peak since the process started; kB, except bytes on macOS

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


# --- records and output ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSummary:
    description: str  # llama.cpp's model_type, e.g. 'llama 135M Q4_1'
    size: int
    n_params: int
    n_layers: int


def summarize_model(path: str) -> ModelSummary:
    gguf = GGUFFile(path)
    n_params = sum(t.n_elements for t in gguf.tensors.values())
    label = f"{n_params / 1e9:.0f}B" if n_params >= 1e9 else f"{n_params / 1e6:.0f}M"
    return ModelSummary(f"{gguf.architecture} {label} {_file_type_name(gguf.get('general.file_type'))}",
                        sum(t.nbytes for t in gguf.tensors.values()), n_params, load_config(gguf).n_layer)


def _file_type_name(value: int | None) -> str:
    """As llama.cpp names file types: 'Q4_0', 'Q4_K - Medium', 'all F32'."""
    try:
        name = LlamaFileType(value).name
    except ValueError:
        return "?"
    if name == "ALL_F32":
        return "all F32"
    name = name.removeprefix("MOSTLY_")
    k_quant = re.fullmatch(r"(Q\d_K)_([SML])", name)
    if k_quant:
        return f"{k_quant[1]} - {dict(S='Small', M='Medium', L='Large')[k_quant[2]]}"
    return name


@dataclass(frozen=True)
class SystemInfo:
    build_commit: str
    build_number: int
    cpu_info: str
    gpu_info: str


def system_info() -> SystemInfo:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE) if cpuinfo.exists() else None
    cpu = found[1].strip() if found else platform.processor()
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    count = git("rev-list", "--count", "HEAD")
    return SystemInfo(git("rev-parse", "--short", "HEAD") or "unknown", int(count or 0), cpu, gpus)


def devices_label(devices: Sequence[str]) -> str:
    """llama.cpp's device names joined by '/': 'CUDA0/CUDA1', 'CPU'."""
    return "/".join(d.replace("cuda:", "CUDA") if d.startswith("cuda") else "CPU" for d in devices)


def tensor_split_label(ts: Sequence[float]) -> str:
    """As llama-bench: two decimals, '/' between devices, '0.00' when not set."""
    return "/".join(f"{v:.2f}" for v in ts) if ts else "0.00"


def record(m: Measurement, model: ModelSummary, system: SystemInfo) -> dict[str, Any]:
    """One test's result under llama-bench's field names, then llamatp's own fields."""
    t = m.test
    samples_ts = [1e9 * (t.n_prompt + t.n_gen) / ns for ns in m.samples_ns]
    avg_ts = statistics.mean(samples_ts)
    decode_only = t.n_prompt == 0 and t.n_gen > 0
    backend = "CPU" if t.devices[0] == "cpu" else "CUDA"
    return {
        "build_commit": system.build_commit, "build_number": system.build_number,
        "cpu_info": system.cpu_info, "gpu_info": system.gpu_info, "backends": backend,
        "model_filename": t.model, "model_type": model.description, "model_size": model.size,
        "model_n_params": model.n_params, "n_batch": t.n_batch, "n_ubatch": t.n_ubatch, "n_threads": m.n_threads,
        "cpu_mask": "0x0", "cpu_strict": False, "poll": 0,  # no CPU thread pool of our own
        "type_k": m.cache_types[0], "type_v": m.cache_types[1], "n_gpu_layers": t.n_gpu_layers, "n_cpu_moe": 0,
        "split_mode": t.split_mode, "main_gpu": t.main_gpu, "no_kv_offload": False,
        "flash_attn": t.flash_attn,
        "devices": devices_label(t.devices), "tensor_split": tensor_split_label(t.tensor_split),
        "tensor_buft_overrides": "none", "load_mode": t.load_mode, "embeddings": False, "no_op_offload": 0,
        "no_host": False, "fit_target": 0, "fit_min_ctx": 0,
        "n_prompt": t.n_prompt, "n_gen": t.n_gen, "n_depth": t.n_depth, "test_time": m.test_time,
        "avg_ns": int(statistics.mean(m.samples_ns)), "stddev_ns": int(_stdev(m.samples_ns)),
        "avg_ts": avg_ts, "stddev_ts": _stdev(samples_ts),
        "peak_mem_bytes": m.peak_mem_bytes,
        "weight_bandwidth_gbs": m.decode_weight_bytes * avg_ts / 1e9 if decode_only else None,
        "samples_ns": m.samples_ns, "samples_ts": samples_ts,
    }


def _stdev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


# Markdown columns: title and width (negative: left-aligned), as llama-bench prints them.
_MD_COLUMNS: dict[str, tuple[str, int]] = {
    "model": ("model", -30), "size": ("size", 10), "params": ("params", 10), "backend": ("backend", -10),
    "n_gpu_layers": ("ngl", 3), "n_threads": ("threads", 7), "n_batch": ("n_batch", 7),
    "n_ubatch": ("n_ubatch", 8), "main_gpu": ("main_gpu", 10), "split_mode": ("sm", 6), "load_mode": ("lm", 10),
    "flash_attn": ("fa", 2),
    "tensor_split": ("ts", -12), "type_k": ("type_k", 6), "type_v": ("type_v", 6), "test": ("test", 15), "t/s": ("t/s", 20),
    "devices": ("dev", -12), "peak_mem": ("peak mem", 16), "weights": ("weights GB/s", 12),
}


def markdown_columns(params: BenchParams, tests: Sequence[BenchTest]) -> list[str]:
    """llama-bench's choice: ngl on GPU backends, threads on the CPU, other parameters only
    when not at their defaults; then the devices, and llamatp's peak memory and weight
    bandwidth; last, as in llama-bench, the test and t/s."""
    defaults = BenchParams(models=())
    columns = ["model", "size", "params", "backend"]
    if any(t.devices[0] != "cpu" for t in tests):
        columns.append("n_gpu_layers")
    if any(t.devices[0] == "cpu" for t in tests):
        columns.append("n_threads")
    for field in ("n_batch", "n_ubatch", "type_k", "type_v", "main_gpu", "split_mode", "load_mode", "flash_attn",
                  "tensor_split"):
        if getattr(params, field) != getattr(defaults, field):
            columns.append(field)
    return columns + ["devices", "peak_mem", "weights", "test", "t/s"]


def _markdown_cell(column: str, r: dict[str, Any], test_name: str) -> str:
    if column == "model":
        return r["model_type"]
    if column == "size":
        size = r["model_size"]
        return f"{size / 2**20:.2f} MiB" if size < 2**30 else f"{size / 2**30:.2f} GiB"
    if column == "params":
        n = r["model_n_params"]
        return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"
    if column == "backend":
        return r["backends"]
    if column == "test":
        return test_name
    if column == "t/s":
        return f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}"
    if column == "peak_mem":
        return "/".join(f"{b / 2**30:.2f}" for b in r["peak_mem_bytes"]) + " GiB"
    if column == "weights":
        return "" if r["weight_bandwidth_gbs"] is None else f"{r['weight_bandwidth_gbs']:.2f}"
    return str(r[column])


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return "" if value is None else str(value)


class Printer:
    """Writes results as they come, in one of llama-bench's formats: the header with the first
    result, so that a run that fails before any leaves no output, and `close` ends what was
    begun (a JSON array is closed even after a failure)."""

    def __init__(self, fmt: str, columns: list[str], system: SystemInfo, out: TextIO) -> None:
        self.fmt, self.columns, self.system, self.out = fmt, columns, system, out
        self.first = True

    def _header(self) -> None:
        if self.fmt == "md":
            widths = [_MD_COLUMNS[c][1] for c in self.columns]
            titles = [_MD_COLUMNS[c][0] for c in self.columns]
            self._line("|" + "".join(f" {_pad(t, w)} |" for t, w in zip(titles, widths)))
            self._line("|" + "".join(f" {'-' * (abs(w) - 1)}{':' if w > 0 else '-'} |" for w in widths))
        elif self.fmt == "json":
            self._line("[")

    def add(self, r: dict[str, Any], test_name: str) -> None:
        if self.first:
            self._header()
        if self.fmt == "md":
            self._line("|" + "".join(f" {_pad(_markdown_cell(c, r, test_name), _MD_COLUMNS[c][1])} |"
                                     for c in self.columns))
        elif self.fmt == "csv":
            fields = [k for k in r if k not in ("samples_ns", "samples_ts")]
            if self.first:
                self._line(",".join(fields))
            buffer = io.StringIO()
            csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="").writerow(_csv_value(r[k]) for k in fields)
            self._line(buffer.getvalue())
        elif self.fmt == "json":
            self.out.write(("" if self.first else ",\n") + textwrap.indent(json.dumps(r, indent=2), "  "))
        elif self.fmt == "sql":
            self._sql(r)
        else:
            self._line(json.dumps(r))
        self.first = False
        self.out.flush()

    def _sql(self, r: dict[str, Any]) -> None:
        """llama-bench's fields only (those up to stddev_ts), so that the rows go into a table
        llama-bench made (`llama-bench -o sql | sqlite3 db`, read by llama.cpp's compare-llama-bench.py)."""
        fields = list(r)[: list(r).index("stddev_ts") + 1]
        if self.first:
            self._line("CREATE TABLE IF NOT EXISTS llama_bench (")
            for i, k in enumerate(fields):
                kind = "REAL" if isinstance(r[k], float) else "INTEGER" if isinstance(r[k], int) else "TEXT"
                self._line(f"  {k} {kind}{',' if i < len(fields) - 1 else ''}")
            self._line(");\n")
        values = ", ".join("'" + _csv_value(r[k]).replace("'", "''") + "'" for k in fields)
        self._line(f"INSERT INTO llama_bench ({', '.join(fields)}) VALUES ({values});")

    def close(self) -> None:
        if self.first:
            return
        if self.fmt == "md":
            self._line(f"\nbuild: {self.system.build_commit} ({self.system.build_number})")
        elif self.fmt == "json":
            self._line("\n]")

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")


def _pad(text: str, width: int) -> str:
    return text.ljust(-width) if width < 0 else text.rjust(width)


def run_bench(params: BenchParams, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """Run every test; print each group's rows as the group finishes: in `params.output` to
    stdout (or `out`), and in `params.output_err` to stderr (or `err`)."""
    tests = bench_tests(params)
    if not tests:
        raise LlamatpError("no tests to run: every -p, -n and -pg value is 0")
    models = {path: summarize_model(path) for path in params.models}
    check_gpu_layers(tests, {path: s.n_layers for path, s in models.items()})
    system = system_info()
    columns = markdown_columns(params, tests)
    printers = [Printer(fmt, columns, system, stream) for fmt, stream in
                ((params.output, out or sys.stdout), (params.output_err, err or sys.stderr)) if fmt != "none"]
    first = 1
    try:
        for _, same_model in itertools.groupby(tests, key=lambda t: t.load_key):
            group = group_of(list(same_model), params, first, len(tests))
            first += len(group.tests)
            check_host_memory(group.options)
            for m in launch(functools.partial(group_job, group), list(group.options.devices)):
                for printer in printers:
                    printer.add(record(m, models[m.test.model], system), m.test.name)
    finally:
        for printer in printers:
            printer.close()
