"""The KV cache types of llama.cpp's `-ctk`/`-ctv` that llamatp provides, and their sizes.

Kept free of torch so that flags are checked and memory planned before torch loads.
"""

from __future__ import annotations

from llamatp.errors import LlamatpError

QUANT_BLOCK = 32  # values per scale in q8_0 and q4_0
BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "bf16": 2.0,
                   "q8_0": (QUANT_BLOCK + 2) / QUANT_BLOCK, "q4_0": (QUANT_BLOCK / 2 + 2) / QUANT_BLOCK}
CACHE_TYPES = tuple(BYTES_PER_VALUE)
QUANTIZED = ("q8_0", "q4_0")
_LLAMA_CPP_ONLY = ("q4_1", "q5_0", "q5_1", "iq4_nl")


def check_cache_type(name: str, flag: str) -> str:
    if name in CACHE_TYPES:
        return name
    choices = "f32, f16, bf16, q8_0 or q4_0"
    if name in _LLAMA_CPP_ONLY:
        raise LlamatpError(f"{flag} {name}: this KV cache type is not provided (use {choices})")
    raise LlamatpError(f"{flag}: unknown KV cache type '{name}' (use {choices})")


def check_head_size(cache_types: tuple[str, ...], head_dim: int) -> None:
    quantized = next((t for t in cache_types if t in QUANTIZED), None)
    if quantized and head_dim % QUANT_BLOCK:
        raise LlamatpError(f"a {quantized} KV cache needs a head size that is a multiple of {QUANT_BLOCK}; "
                           f"this model's is {head_dim}")
