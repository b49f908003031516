"""The KV cache: keys and values of this rank's layers and KV heads, in a float type or in q8_0.

The types are llama.cpp's `-ctk`/`-ctv` names. q8_0 keeps each run of 32 values of a head as
8-bit codes with one f16 scale, as llama.cpp's q8_0 blocks do: 34 bytes per 32 values, a
little over half of a 16-bit cache, so that a decode step deep into the context reads about
half the bytes. Values are rounded once, when they are stored; attention reads the codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llamatp.cache_types import Q8_BLOCK

FLOAT_TYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in FLOAT_TYPES.items() if d == dtype)


def quantize_q8_0(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (int8, x's shape) and scales (f16, one per 32 values of the last dimension):
    the largest magnitude of a block maps to 127, the rest round to the nearest step."""
    blocks = x.float().unflatten(-1, (-1, Q8_BLOCK))
    amax = blocks.abs().amax(-1)
    inverse = torch.where(amax > 0, 127.0 / torch.where(amax > 0, amax, 1.0), 0.0)
    codes = torch.round(blocks * inverse[..., None]).to(torch.int8).flatten(-2)
    return codes, (amax / 127.0).to(torch.float16)


def dequantize_q8_0(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (codes.unflatten(-1, (-1, Q8_BLOCK)).float() * scales.float()[..., None]).flatten(-2)


@dataclass
class CacheTensor:
    """K or V of one layer, [kv_heads, n_ctx, head_dim] (or of every layer, with a leading
    dimension): `data` in a float type, or q8_0 codes (int8) with `scale` (f16), one per 32
    values of the last dimension. `store` and `read` work on one layer's."""

    data: torch.Tensor
    scale: torch.Tensor | None = None

    def of_layer(self, i: int) -> CacheTensor:
        """Layer i of a cache of every layer (views)."""
        return CacheTensor(self.data[i], None if self.scale is None else self.scale[i])

    def store(self, pos: torch.Tensor, x: torch.Tensor) -> None:
        """Write x [T, kv_heads, head_dim] at positions pos [T]."""
        x = x.transpose(0, 1)
        if self.scale is None:
            self.data.index_copy_(1, pos, x.to(self.data.dtype))
            return
        codes, scales = quantize_q8_0(x)
        self.data.index_copy_(1, pos, codes)
        self.scale.index_copy_(1, pos, scales)

    def read(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The first n positions as `dtype` (a view where the cache holds that type)."""
        if self.scale is None:
            return self.data[:, :n].to(dtype)
        return dequantize_q8_0(self.data[:, :n], self.scale[:, :n]).to(dtype)

    @property
    def values_dtype(self) -> torch.dtype:
        """The type the decode kernel multiplies these values in: their own, f16 for q8_0."""
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
    ([layers, kv_heads, n_ctx, head_dim], scales [..., head_dim / 32] for q8_0); `layer(i)`
    hands out one layer's views."""

    def __init__(self, spec: CacheSpec, n_ctx: int) -> None:
        self.spec, self.n_ctx = spec, n_ctx
        self.k, self.v = self._allocate(spec.type_k), self._allocate(spec.type_v)

    def layer(self, i: int) -> tuple[CacheTensor, CacheTensor]:
        return self.k.of_layer(i), self.v.of_layer(i)

    def _allocate(self, cache_type: str) -> CacheTensor:
        spec = self.spec
        shape = (spec.n_layers, spec.n_kv_heads, self.n_ctx, spec.head_dim)
        if cache_type != "q8_0":
            return CacheTensor(torch.zeros(shape, dtype=FLOAT_TYPES[cache_type], device=spec.device))
        return CacheTensor(torch.zeros(shape, dtype=torch.int8, device=spec.device),
                           torch.zeros(*shape[:-1], spec.head_dim // Q8_BLOCK, dtype=torch.float16, device=spec.device))
