"""The split plan: which part of the model each rank holds, and what that costs in memory.

A pure function of the model's shape, the devices, the split mode, `-ts` and the context.
The loader and the model obey it; nothing else decides a shard's bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.cache_types import BYTES_PER_VALUE
from llamatp.config import ModelConfig
from llamatp.errors import LlamatpError
from llamatp.gguf_file import TensorInfo

SplitMode = Literal["none", "layer", "tensor"]
SPLIT_MODES: tuple[str, ...] = ("none", "layer", "tensor")

_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(.+)")


@dataclass(frozen=True)
class Shard:
    """What one rank holds. In tensor mode every rank holds every layer, and a slice of it."""

    rank: int
    device: str
    layers: range
    q_heads: range
    kv_heads: range
    ffn: range
    vocab: range
    has_embedding: bool
    has_output: bool
    weight_bytes: int = 0
    kv_bytes: int = 0
    buffer_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.buffer_bytes


@dataclass(frozen=True)
class Plan:
    mode: SplitMode
    n_ctx: int
    n_ubatch: int
    shards: tuple[Shard, ...]
    notes: tuple[str, ...]
    cache_types: tuple[str, str]  # of K and of V (llama.cpp's -ctk, -ctv)

    @property
    def world_size(self) -> int:
        return len(self.shards)


def split_by_proportions(n_units: int, proportions: list[float]) -> list[range]:
    """Contiguous ranges covering range(n_units), sized by cumulative rounding of the proportions."""
    total = sum(proportions)
    bounds, acc = [0], 0.0
    for p in proportions:
        acc += p
        bounds.append(round(n_units * acc / total))
    bounds[-1] = n_units
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def make_plan(
    config: ModelConfig,
    tensors: dict[str, TensorInfo],
    devices: list[str],
    mode: SplitMode,
    n_ctx: int,
    n_ubatch: int,
    proportions: list[float] | None = None,
    cache_types: tuple[str, str] = ("f16", "f16"),
    act_bytes: int = 2,
) -> Plan:
    """Divide the model over `devices` and cost each share. Raises LlamatpError on a bad request."""
    world = len(devices)
    if mode == "none" and world != 1:
        raise LlamatpError(f"split mode 'none' runs on one device, got {world}")
    proportions = _check_proportions(proportions, world)
    notes: list[str] = []
    everything = dict(
        layers=range(config.n_layer), q_heads=range(config.n_head), kv_heads=range(config.n_head_kv),
        ffn=range(config.n_ff), vocab=range(config.n_vocab),
    )
    shards: list[Shard] = []
    if mode in ("none", "layer"):
        if config.n_layer < world:
            raise LlamatpError(f"cannot split {config.n_layer} layers over {world} devices")
        for rank, layers in enumerate(split_by_proportions(config.n_layer, proportions)):
            if not layers:
                raise LlamatpError(f"-ts gives device {devices[rank]} no layers")
            shards.append(Shard(rank, devices[rank], **{**everything, "layers": layers},
                                has_embedding=rank == 0, has_output=rank == world - 1))
    else:
        if not all(proportions):
            idle = devices[proportions.index(0.0)]
            raise LlamatpError(f"-ts gives device {idle} no share; under tensor split every device needs one")
        heads = _split_heads(config, proportions, notes)
        ffn_unit = _ffn_unit(config, tensors)
        ffn = [range(r.start * ffn_unit, min(r.stop * ffn_unit, config.n_ff))
               for r in split_by_proportions(-(-config.n_ff // ffn_unit), proportions)]
        vocab = split_by_proportions(config.n_vocab, proportions)
        for rank in range(world):
            q, kv = heads[rank]
            shards.append(Shard(rank, devices[rank], range(config.n_layer), q, kv, ffn[rank], vocab[rank],
                                has_embedding=True, has_output=True))
    costed = tuple(
        _with_costs(s, config, tensors, mode, n_ctx, n_ubatch, cache_types, act_bytes) for s in shards
    )
    return Plan(mode, n_ctx, n_ubatch, costed, tuple(notes), cache_types)


def tensor_slice(name: str, shard: Shard, mode: SplitMode, config: ModelConfig) -> tuple[range | None, range | None] | None:
    """(rows, cols) of tensor `name` that `shard` holds; None for a range means all of it.

    Returns None when the shard holds none of the tensor.
    """
    match = _LAYER_TENSOR.fullmatch(name)
    if match is None:
        return _global_slice(name, shard, mode, config.tied_embeddings)
    layer, kind = int(match.group(1)), match.group(2)
    if layer not in shard.layers:
        return None
    if mode != "tensor":
        return (None, None)
    hd = config.head_dim
    q_rows = range(shard.q_heads.start * hd, shard.q_heads.stop * hd)
    kv_rows = range(shard.kv_heads.start * hd, shard.kv_heads.stop * hd)
    rows_by_kind = {
        "attn_q.weight": q_rows, "attn_q.bias": q_rows,
        "attn_k.weight": kv_rows, "attn_k.bias": kv_rows,
        "attn_v.weight": kv_rows, "attn_v.bias": kv_rows,
        "ffn_gate.weight": shard.ffn, "ffn_up.weight": shard.ffn,
    }
    if kind in rows_by_kind:
        return (rows_by_kind[kind], None)
    if kind == "attn_output.weight":
        return (None, q_rows)
    if kind == "ffn_down.weight":
        return (None, shard.ffn)
    return (None, None)  # norms are small and replicated


def _global_slice(
    name: str, shard: Shard, mode: SplitMode, tied: bool
) -> tuple[range | None, range | None] | None:
    vocab_rows = shard.vocab if mode == "tensor" else None
    if name == "token_embd.weight":
        # A tied model reads its output head from the embedding.
        return (vocab_rows, None) if shard.has_embedding or (tied and shard.has_output) else None
    if name == "output.weight":
        return (vocab_rows, None) if shard.has_output else None
    if name == "output_norm.weight":
        return (None, None) if shard.has_output else None
    if name == "rope_freqs.weight":
        return (None, None)
    return None


def _check_proportions(proportions: list[float] | None, world: int) -> list[float]:
    if not proportions:
        return [1.0] * world
    if len(proportions) > world:
        raise LlamatpError(f"-ts has {len(proportions)} entries but there are only {world} devices")
    proportions = proportions + [0.0] * (world - len(proportions))
    if any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise LlamatpError("-ts proportions must be non-negative and not all zero")
    return proportions


def _split_heads(config: ModelConfig, proportions: list[float], notes: list[str]) -> list[tuple[range, range]]:
    """Query heads per rank, and the KV heads they read.

    Whole KV groups when there are at least as many KV heads as ranks; otherwise query
    heads are divided and each rank keeps a copy of the KV heads its queries need.
    """
    world, g = len(proportions), config.n_group
    if config.n_head_kv >= world:
        groups = split_by_proportions(config.n_head_kv, proportions)
        return [(range(r.start * g, r.stop * g), r) for r in groups]
    result = []
    for q in split_by_proportions(config.n_head, proportions):
        kv = range(q.start // g, -(-q.stop // g)) if q else range(0)
        result.append((q, kv))
    notes.append(
        f"{config.n_head_kv} KV head(s) for {world} devices: KV heads are replicated on the devices whose "
        "query heads read them"
    )
    return result


def _ffn_unit(config: ModelConfig, tensors: dict[str, TensorInfo]) -> int:
    """Split the FFN on block boundaries of ffn_down, whose columns are divided."""
    unit = 1
    for layer in range(config.n_layer):
        info = tensors.get(f"blk.{layer}.ffn_down.weight")
        if info is not None:
            unit = max(unit, GGML_QUANT_SIZES[info.qtype][0])
    return unit if config.n_ff % unit == 0 else 1


def _sliced_bytes(info: TensorInfo, rows: range | None, cols: range | None) -> int:
    n_rows = info.n_elements // info.shape[-1]
    row_fraction = (len(rows) if rows is not None else n_rows) / max(n_rows, 1)
    col_fraction = (len(cols) if cols is not None else info.shape[-1]) / info.shape[-1]
    return int(info.nbytes * row_fraction * col_fraction)


def _with_costs(
    shard: Shard, config: ModelConfig, tensors: dict[str, TensorInfo], mode: SplitMode,
    n_ctx: int, n_ubatch: int, cache_types: tuple[str, str], act_bytes: int,
) -> Shard:
    weight_bytes, largest_linear = 0, 0
    for info in tensors.values():
        piece = tensor_slice(info.name, shard, mode, config)
        if piece is None:
            continue
        nbytes = _sliced_bytes(info, *piece)
        weight_bytes += nbytes
        if len(info.shape) == 2 and info.qtype != GGMLQuantizationType.F32 and "token_embd" not in info.name:
            rows = len(piece[0]) if piece[0] is not None else info.shape[0]
            cols = len(piece[1]) if piece[1] is not None else info.shape[1]
            largest_linear = max(largest_linear, rows * cols * act_bytes)
    values = len(shard.layers) * n_ctx * len(shard.kv_heads) * config.head_dim
    kv_bytes = int(values * sum(BYTES_PER_VALUE[t] for t in cache_types))
    width = config.n_embd * 4 + (len(shard.q_heads) + 2 * len(shard.kv_heads)) * config.head_dim + 2 * len(shard.ffn)
    activations = 2 * n_ubatch * width * act_bytes
    scores = len(shard.q_heads) * n_ubatch * n_ctx * 4  # attention scores when no fused kernel applies
    logits = n_ubatch * config.n_vocab * 4 if shard.has_output else 0
    # Prompt batches dequantize one weight at a time into a scratch buffer.
    buffer_bytes = activations + scores + logits + largest_linear
    return replace(shard, weight_bytes=weight_bytes, kv_bytes=kv_bytes, buffer_bytes=buffer_bytes)


def check_fits(plan: Plan, free_bytes: list[int | None]) -> None:
    """Fail before loading when a device cannot hold its share. CPU workers share the host's
    memory (`free_bytes` gives it for each), so their shares are checked together."""
    on_cpu = [(s, free) for s, free in zip(plan.shards, free_bytes) if s.device == "cpu"]
    for shard, free in zip(plan.shards, free_bytes):
        if shard.device != "cpu":
            check_shard_fits(shard, free)
    if on_cpu:
        together = replace(on_cpu[0][0], weight_bytes=sum(s.weight_bytes for s, _ in on_cpu),
                           kv_bytes=sum(s.kv_bytes for s, _ in on_cpu),
                           buffer_bytes=sum(s.buffer_bytes for s, _ in on_cpu))
        check_shard_fits(together, on_cpu[0][1])


def check_shard_fits(shard: Shard, free: int | None) -> None:
    """`free` is the device's free bytes; None (not known) is not checked."""
    if free is not None and shard.total_bytes > free:
        raise LlamatpError(
            f"device {shard.device} needs {format_bytes(shard.total_bytes)} (weights "
            f"{format_bytes(shard.weight_bytes)}, KV cache {format_bytes(shard.kv_bytes)}, buffers "
            f"{format_bytes(shard.buffer_bytes)}) but has {format_bytes(free)} free; "
            "use more devices, a smaller -c, or -ts"
        )


def format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def describe(plan: Plan, config: ModelConfig) -> list[str]:
    """Human-readable lines, one per device, for --dry-run, --verbose and `info`."""
    lines = [f"split mode {plan.mode} over {plan.world_size} device(s), n_ctx {plan.n_ctx}, n_ubatch {plan.n_ubatch}, "
             f"KV cache K {plan.cache_types[0]}, V {plan.cache_types[1]}"]
    for s in plan.shards:
        what = f"layers {s.layers.start}-{s.layers.stop - 1}"
        if plan.mode == "tensor":
            what = (f"q heads {_span(s.q_heads)}, kv heads {_span(s.kv_heads)}, ffn {_span(s.ffn)} of "
                    f"{config.n_ff}, vocab {_span(s.vocab)}")
        lines.append(
            f"  {s.device:>8}: {what}; weights {format_bytes(s.weight_bytes)}, KV cache "
            f"{format_bytes(s.kv_bytes)}, buffers {format_bytes(s.buffer_bytes)}, total {format_bytes(s.total_bytes)}"
        )
    lines += [f"  note: {n}" for n in plan.notes]
    return lines


def _span(r: range) -> str:
    return f"{r.start}-{r.stop - 1}" if r else "none"
