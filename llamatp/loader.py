"""Build one rank's Transformer from a GGUF file, reading only the bytes its shard needs."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from gguf import GGMLQuantizationType

from llamatp.config import ModelConfig, check_tensor_shapes
from llamatp.gguf_file import GGUFFile
from llamatp.linear import Linear, StackedLinear, WeightSlice
from llamatp.kernels import add_rms_norm
from llamatp.model import (
    AddNorm, AllReduce, Attention, Block, FeedForward, RMSNorm, Rope, Transformer, VocabEmbedding, no_reduce,
)
from llamatp.kv_cache import CacheSpec, KVCache
from llamatp.plan import Plan, Shard, tensor_slice
from llamatp.quant.blocks import block_size, check_supported, column_byte_range
from llamatp.quant.dequant import dequantize

F32 = GGMLQuantizationType.F32


def read_slice(gguf: GGUFFile, name: str, rows: range | None, cols: range | None,
               device: torch.device) -> WeightSlice:
    """Rows and columns of a tensor, still in GGUF blocks, copied to `device`.

    Columns off block boundaries (a head split that cuts a quantization block) are
    dequantized from the blocks that cover them; only this rank's slice is touched.
    """
    info = gguf.tensor(name)
    check_supported(info.qtype, name)
    n_cols = info.shape[-1]
    if len(info.shape) == 1 and rows is not None:  # a bias: its rows are its elements
        rows, cols = None, rows
    raw = gguf.raw(name, rows)
    qtype = info.qtype
    if cols is not None and (cols.start, cols.stop) != (0, n_cols):
        block = block_size(qtype)
        if cols.start % block == 0 and cols.stop % block == 0:
            start, stop = column_byte_range(qtype, cols.start, cols.stop)
            raw = raw[:, start:stop]
        else:
            first, last = cols.start // block * block, -(-cols.stop // block) * block
            start, stop = column_byte_range(qtype, first, last)
            covering = torch.from_numpy(np.ascontiguousarray(raw[:, start:stop]))
            values = dequantize(covering, qtype)[:, cols.start - first : cols.stop - first].contiguous()
            raw, qtype = values.view(torch.uint8).numpy(), F32
        n_cols = len(cols)
    with warnings.catch_warnings():  # the memory map is read-only; nothing writes through it
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(np.ascontiguousarray(raw)).to(device)
    return WeightSlice(tensor, qtype, tensor.shape[0], n_cols)


def read_dense(gguf: GGUFFile, name: str, device: torch.device) -> torch.Tensor:
    piece = read_slice(gguf, name, None, None, device)
    return piece.dense(torch.float32).reshape(gguf.tensor(name).shape)


def build_model(gguf: GGUFFile, config: ModelConfig, plan: Plan, rank: int, device: torch.device, dtype: torch.dtype,
                all_reduce: AllReduce, reduce_add_norm: AddNorm) -> Transformer:
    """`all_reduce` sums a tensor over ranks; `reduce_add_norm` sums one and adds it to the
    residual stream with the norm (`model.AddNorm`). Both apply under tensor split only, and
    the second only where no post norm comes in between."""
    check_tensor_shapes(gguf, config)
    shard = plan.shards[rank]
    tensor_split = plan.mode == "tensor"
    reduce = all_reduce if tensor_split else no_reduce
    # Partial outputs are summed by the norm that adds them to the residual stream, unless a
    # post norm needs the sum first; the embedding's vocabulary slices are summed the same way.
    norm_sums = tensor_split and not config.post_norms
    add_norm = reduce_add_norm if norm_sums else add_rms_norm

    def piece(name: str) -> WeightSlice:
        where = tensor_slice(name, shard, plan.mode, config)
        assert where is not None, f"the plan gives rank {rank} no part of {name}"
        return read_slice(gguf, name, *where, device)

    def linear(*names: str) -> StackedLinear:
        """The projections `names` of one input, stacked by rows where their GGUF types match."""
        parts = []
        for group in _runs_of_same_type(names, lambda n: gguf.tensor(n + ".weight").qtype):
            pieces = [piece(n + ".weight") for n in group]
            biases = [piece(n + ".bias").dense(dtype).reshape(-1) for n in group if n + ".bias" in gguf.tensors]
            raw = torch.cat([p.raw for p in pieces])
            stacked = WeightSlice(raw, pieces[0].qtype, raw.shape[0], pieces[0].cols)
            parts.append(Linear(stacked, torch.cat(biases) if biases else None, dtype))
        return StackedLinear(parts)

    def norm(name: str) -> RMSNorm:
        return RMSNorm(read_dense(gguf, name, device), config.norm_eps)

    freq_factors = read_dense(gguf, "rope_freqs.weight", device) if "rope_freqs.weight" in gguf.tensors else None
    rope_global = Rope(config.head_dim, config.rope_base, config.rope_scale, config.rope_neox, freq_factors, device)
    rope_local = Rope(config.head_dim, config.rope_base_swa, 1.0, config.rope_neox, None, device)

    blocks = []
    for layer in shard.layers:
        p = f"blk.{layer}."
        qk_norms = (norm(p + "attn_q_norm.weight"), norm(p + "attn_k_norm.weight")) if config.qk_norm else (None, None)
        swa = config.is_swa_layer(layer)
        attn = Attention(
            config, shard.q_heads, shard.kv_heads, linear(p + "attn_q", p + "attn_k", p + "attn_v"),
            linear(p + "attn_output"), *qk_norms, rope_local if swa else rope_global,
            config.sliding_window if swa else 0,
        )
        ffn = FeedForward(linear(p + "ffn_gate", p + "ffn_up"), linear(p + "ffn_down"), config.gelu)
        post = (norm(p + "post_attention_norm.weight"), norm(p + "post_ffw_norm.weight")) if config.post_norms else (None, None)
        blocks.append(Block(norm(p + "attn_norm.weight"), attn, norm(p + "ffn_norm.weight"), ffn, *post, swa, reduce,
                            add_norm))

    embed = None
    if shard.has_embedding:
        table = piece("token_embd.weight")
        embed = VocabEmbedding(table, _vocab_start(plan, shard), config.embed_scale, dtype,
                               None if norm_sums else reduce)
    head = norm_out = None
    if shard.has_output:
        norm_out = norm("output_norm.weight")
        head = linear("token_embd" if config.tied_embeddings else "output")
    cache = KVCache(CacheSpec(len(shard.layers), len(shard.kv_heads), config.head_dim, *plan.cache_types, device),
                    plan.n_ctx)
    return Transformer(config, embed, blocks, norm_out, head, cache, add_norm)


def _runs_of_same_type(names: tuple[str, ...], qtype_of: Callable[[str], object]) -> list[list[str]]:
    runs: list[list[str]] = []
    for name in names:
        if runs and qtype_of(runs[-1][-1]) == qtype_of(name):
            runs[-1].append(name)
        else:
            runs.append([name])
    return runs


def _vocab_start(plan: Plan, shard: Shard) -> int:
    return shard.vocab.start if plan.mode == "tensor" else 0
