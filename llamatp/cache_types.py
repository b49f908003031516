"""The KV cache types of llama.cpp's `-ctk`/`-ctv` that llamatp provides, and their sizes.

Kept free of torch so that flags are checked and memory planned before torch loads.
"""

from __future__ import annotations

from llamatp.errors import LlamatpError

Q8_BLOCK = 32  # values per q8_0 scale
BYTES_PER_VALUE = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": (Q8_BLOCK + 2) / Q8_BLOCK}
CACHE_TYPES = tuple(BYTES_PER_VALUE)
_LLAMA_CPP_ONLY = ("q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")


def check_cache_type(name: str, flag: str) -> str:
    if name in CACHE_TYPES:
        return name
    choices = "f32, f16, bf16 or q8_0"
    if name in _LLAMA_CPP_ONLY:
        raise LlamatpError(f"{flag} {name}: this KV cache type is not provided (use {choices})")
    raise LlamatpError(f"{flag}: unknown KV cache type '{name}' (use {choices})")


def check_head_size(cache_types: tuple[str, ...], head_dim: int) -> None:
    if "q8_0" in cache_types and head_dim % Q8_BLOCK:
        raise LlamatpError(f"a q8_0 KV cache needs a head size that is a multiple of {Q8_BLOCK}; "
                           f"this model's is {head_dim}")
