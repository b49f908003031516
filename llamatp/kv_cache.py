"""The KV cache: keys and values of this rank's layers and KV heads, in a float type, q8_0 or q4_0.

The types are llama.cpp's `-ctk`/`-ctv` names, rounded as llama.cpp rounds its blocks. q8_0
keeps each run of 32 values of a head as 8-bit codes with one f16 scale (34 bytes per 32
values, a little over half of a 16-bit cache); q4_0 as 4-bit codes with one f16 scale (18
bytes, a little over a quarter). A decode step deep into the context reads that many fewer
bytes. Values are rounded once, when they are stored; attention reads the codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llamatp.cache_types import QUANT_BLOCK

FLOAT_TYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
# Where each of eight consecutive q4_0 codes sits in its 32-bit word: codes 2k and 2k + 1 at
# bits 4k and 16 + 4k, so that one mask of the word shifted by 4k puts both in the low bits of
# the two halves of an f16 pair (see `kernels._q4_words_f16`).
Q4_SHIFTS = (0, 16, 4, 20, 8, 24, 12, 28)


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in FLOAT_TYPES.items() if d == dtype)


def quantize_q8_0(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (int8, x's shape) and scales (f16, one per 32 values of the last dimension):
    the largest magnitude of a block maps to 127, the rest round to the nearest step."""
    blocks = x.float().unflatten(-1, (-1, QUANT_BLOCK))
    amax = blocks.abs().amax(-1)
    inverse = torch.where(amax > 0, 127.0 / torch.where(amax > 0, amax, 1.0), 0.0)
    codes = torch.round(blocks * inverse[..., None]).to(torch.int8).flatten(-2)
    return codes, (amax / 127.0).to(torch.float16)


def dequantize_q8_0(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (codes.unflatten(-1, (-1, QUANT_BLOCK)).float() * scales.float()[..., None]).flatten(-2)


def quantize_q4_0(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed codes (uint8, half of x's last dimension) and scales (f16, one per 32 values), as
    llama.cpp rounds q4_0: the value of largest magnitude (the first, on a tie) maps to code 0,
    d = it / -8, and each value x to min(15, trunc(x / d + 8.5)), which stands for (code - 8) d."""
    blocks = x.float().unflatten(-1, (-1, QUANT_BLOCK))
    peak = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True)).squeeze(-1)
    d = peak / -8.0
    inverse = torch.where(d != 0, 1.0 / torch.where(d != 0, d, 1.0), 0.0)
    codes = (blocks * inverse[..., None] + 8.5).to(torch.int32).clamp(max=15).flatten(-2)
    return pack_q4(codes), d.to(torch.float16)


def pack_q4(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 (any integer type, last dimension a multiple of 8) as bytes, eight a word."""
    shifts = torch.tensor(Q4_SHIFTS, dtype=torch.int32, device=codes.device)
    words = (codes.unflatten(-1, (-1, 8)).to(torch.int32) << shifts).sum(-1, dtype=torch.int32)
    return words.contiguous().view(torch.uint8)


def unpack_q4(packed: torch.Tensor) -> torch.Tensor:
    """The codes (int32) of `pack_q4`'s bytes."""
    shifts = torch.tensor(Q4_SHIFTS, dtype=torch.int32, device=packed.device)
    words = packed.contiguous().view(torch.int32)
    return ((words[..., None] >> shifts) & 0xF).flatten(-2)


def dequantize_q4_0(packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    codes = unpack_q4(packed).unflatten(-1, (-1, QUANT_BLOCK))
    return ((codes - 8).float() * scales.float()[..., None]).flatten(-2)


QUANTIZERS = {"q8_0": (quantize_q8_0, dequantize_q8_0), "q4_0": (quantize_q4_0, dequantize_q4_0)}


@dataclass
class CacheTensor:
    """K or V of one layer, [kv_heads, n_ctx, head_dim] (or of every layer, with a leading
    dimension): `data` in a float type, or codes with `scale` (f16), one per 32 values of the
    last dimension: q8_0 codes as int8, q4_0 codes packed two a byte (uint8, head_dim / 2).
    `store` and `read` work on one layer's."""

    data: torch.Tensor
    scale: torch.Tensor | None = None

    @property
    def type(self) -> str:
        """llama.cpp's name of what it holds."""
        if self.scale is None:
            return dtype_name(self.data.dtype)
        return "q8_0" if self.data.dtype == torch.int8 else "q4_0"

    def of_layer(self, i: int) -> CacheTensor:
        """Layer i of a cache of every layer (views)."""
        return CacheTensor(self.data[i], None if self.scale is None else self.scale[i])

    def store(self, pos: torch.Tensor, x: torch.Tensor) -> None:
        """Write x [T, kv_heads, head_dim] at positions pos [T]."""
        x = x.transpose(0, 1)
        if self.scale is None:
            self.data.index_copy_(1, pos, x.to(self.data.dtype))
            return
        codes, scales = QUANTIZERS[self.type][0](x)
        self.data.index_copy_(1, pos, codes)
        self.scale.index_copy_(1, pos, scales)

    def read(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The first n positions as `dtype` (a view where the cache holds that type)."""
        if self.scale is None:
            return self.data[:, :n].to(dtype)
        return QUANTIZERS[self.type][1](self.data[:, :n], self.scale[:, :n]).to(dtype)

    @property
    def values_dtype(self) -> torch.dtype:
        """The type the decode kernel multiplies these values in: their own, f16 for codes."""
        return torch.float16 if self.scale is not None else self.data.dtype


def attention_dtype(activations: torch.dtype, k: CacheTensor, v: CacheTensor) -> torch.dtype:
    """The type a prompt pass reads the cache in. With float32 activations (the CPU), float32;
    otherwise the type the decode kernel multiplies K and V in where they agree, so that an f16
    cache is not read through bf16; float32 where they differ."""
    if activations == torch.float32 or k.values_dtype != v.values_dtype:
        return torch.float32
    return k.values_dtype


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds, whatever its length: this rank's layers and KV heads, in these types."""

    n_layers: int
    n_kv_heads: int
    head_dim: int
    type_k: str
    type_v: str
    device: torch.device


class KVCache:
    """Keys and values of n_ctx positions: `k` and `v` hold every layer
    ([layers, kv_heads, n_ctx, head_dim], scales [..., head_dim / 32] for codes); `layer(i)`
    hands out one layer's views."""

    def __init__(self, spec: CacheSpec, n_ctx: int) -> None:
        self.spec, self.n_ctx = spec, n_ctx
        self.k, self.v = self._allocate(spec.type_k), self._allocate(spec.type_v)

    def layer(self, i: int) -> tuple[CacheTensor, CacheTensor]:
        return self.k.of_layer(i), self.v.of_layer(i)

    def _allocate(self, cache_type: str) -> CacheTensor:
        spec = self.spec
        shape = (spec.n_layers, spec.n_kv_heads, self.n_ctx, spec.head_dim)
        if cache_type in FLOAT_TYPES:
            return CacheTensor(torch.zeros(shape, dtype=FLOAT_TYPES[cache_type], device=spec.device))
        codes = (torch.zeros(shape, dtype=torch.int8, device=spec.device) if cache_type == "q8_0" else
                 torch.zeros(*shape[:-1], spec.head_dim // 2, dtype=torch.uint8, device=spec.device))
        return CacheTensor(codes, torch.zeros(*shape[:-1], spec.head_dim // QUANT_BLOCK, dtype=torch.float16,
                                              device=spec.device))
