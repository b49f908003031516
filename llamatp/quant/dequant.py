"""Dequantize GGML blocks to float32 with torch ops, on whatever device the bytes live.

Every block of a row is decoded at once: the bytes are viewed as [n_blocks, type_size],
bit fields are unpacked with broadcast shifts, and the scale arithmetic runs in float32
in ggml's order: a float16 scale is widened, multiplied by its sub-block factor, then by
the quants, and a min is added or subtracted last. The products are exact in float32 (an
11-bit mantissa times small integers), so only that last step rounds, and the results
match ggml's reference dequantization bit for bit.

Block layouts (byte offsets) are those of ggml-common.h; QK_K blocks hold 256 elements.
"""

from __future__ import annotations

from collections.abc import Callable

import math

import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.errors import LlamatpError
from llamatp.quant.blocks import SUPPORTED_TYPES

_FLOAT_TYPES: dict[GGMLQuantizationType, torch.dtype] = {
    GGMLQuantizationType.F32: torch.float32,
    GGMLQuantizationType.F16: torch.float16,
    GGMLQuantizationType.BF16: torch.bfloat16,
}


def _f16(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The float16 field at `offset` of every block, widened: [n_blocks, 1] float32."""
    return blocks[:, offset : offset + 2].contiguous().view(torch.float16).to(torch.float32)


def _unpack(packed: torch.Tensor, group: int, bits: int) -> torch.Tensor:
    """Split each byte into 8 // bits fields of `bits` bits: [n_blocks, n_bytes * 8 // bits] uint8.

    Within every run of `group` bytes, the lowest field of each byte comes first, then the
    next field of each byte, and so on: the order in which ggml packs its quants.
    """
    n_blocks, n_bytes = packed.shape
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device).view(1, 1, -1, 1)
    fields = (packed.reshape(n_blocks, n_bytes // group, 1, group) >> shifts) & ((1 << bits) - 1)
    return fields.reshape(n_blocks, n_bytes * 8 // bits)


def _bits(packed: torch.Tensor) -> torch.Tensor:
    """The bits of a little-endian integer, least significant first: [n_blocks, n_bytes * 8] uint8."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(-1) >> shifts) & 1).flatten(1)


def _q4_0(b: torch.Tensor) -> torch.Tensor:  # d: f16, qs: 16 bytes of nibbles
    q = _unpack(b[:, 2:], 16, 4).to(torch.int8) - 8
    return _f16(b, 0) * q.to(torch.float32)


def _q4_1(b: torch.Tensor) -> torch.Tensor:  # d: f16, m: f16, qs: 16 bytes of nibbles
    q = _unpack(b[:, 4:], 16, 4).to(torch.float32)
    return _f16(b, 0) * q + _f16(b, 2)


def _q5_0(b: torch.Tensor) -> torch.Tensor:  # d: f16, qh: u32 of fifth bits, qs: 16 bytes of nibbles
    q = (_unpack(b[:, 6:], 16, 4) | (_bits(b[:, 2:6]) << 4)).to(torch.int8) - 16
    return _f16(b, 0) * q.to(torch.float32)


def _q5_1(b: torch.Tensor) -> torch.Tensor:  # d: f16, m: f16, qh: u32 of fifth bits, qs: 16 bytes
    q = (_unpack(b[:, 8:], 16, 4) | (_bits(b[:, 4:8]) << 4)).to(torch.float32)
    return _f16(b, 0) * q + _f16(b, 2)


def _q8_0(b: torch.Tensor) -> torch.Tensor:  # d: f16, qs: 32 int8
    return b[:, 2:].view(torch.int8).to(torch.float32) * _f16(b, 0)


def _q2_k(b: torch.Tensor) -> torch.Tensor:  # scales: 16 (4-bit scale | 4-bit min), qs: 64, d, dmin
    n = b.shape[0]
    scales = b[:, :16]
    scale = (_f16(b, 80) * (scales & 0xF).to(torch.float32)).view(n, 16, 1)
    min_ = (_f16(b, 82) * (scales >> 4).to(torch.float32)).view(n, 16, 1)
    q = _unpack(b[:, 16:80], 32, 2).view(n, 16, 16).to(torch.float32)
    return (scale * q - min_).view(n, 256)


def _q3_k(b: torch.Tensor) -> torch.Tensor:  # hmask: 32, qs: 64, scales: 12 (16 x 6 bits), d
    n = b.shape[0]
    # Scale j: low 4 bits are nibble j of bytes 0-7, high 2 bits are 2-bit field j of bytes 8-11.
    scales = _unpack(b[:, 96:104], 8, 4) | (_unpack(b[:, 104:108], 4, 2) << 4)
    scale = (_f16(b, 108) * (scales.to(torch.int8) - 32).to(torch.float32)).view(n, 16, 1)
    # A clear hmask bit subtracts 4 from the 2-bit quant.
    high_clear = _unpack(b[:, :32], 32, 1) ^ 1
    q = (_unpack(b[:, 32:96], 32, 2).to(torch.int8) - (high_clear << 2).to(torch.int8)).to(torch.float32)
    return (scale * q.view(n, 16, 16)).view(n, 256)


def _k_scales_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight 6-bit scales and eight 6-bit mins from the 12 bytes of a Q4_K/Q5_K block.

    Bytes 0-3 hold scales 0-3 (and the top bits of scales 4-7), bytes 4-7 mins 0-3 (and the
    top bits of mins 4-7), bytes 8-11 the low nibbles of scales 4-7 and mins 4-7.
    """
    scales_lo, mins_lo, high = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = torch.cat([scales_lo & 0x3F, (high & 0x0F) | ((scales_lo >> 2) & 0x30)], dim=-1)
    mins = torch.cat([mins_lo & 0x3F, (high >> 4) | ((mins_lo >> 2) & 0x30)], dim=-1)
    return scales, mins


def _k_quant_4_5(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Q4_K/Q5_K: `scale * q - min` over eight sub-blocks of 32, from d, dmin and packed scales."""
    n = b.shape[0]
    scales, mins = _k_scales_mins(b[:, 4:16])
    scale = (_f16(b, 0) * scales.to(torch.float32)).view(n, 8, 1)
    min_ = (_f16(b, 2) * mins.to(torch.float32)).view(n, 8, 1)
    return (scale * q.view(n, 8, 32).to(torch.float32) - min_).view(n, 256)


def _q4_k(b: torch.Tensor) -> torch.Tensor:  # d, dmin, scales: 12, qs: 128 bytes of nibbles
    return _k_quant_4_5(b, _unpack(b[:, 16:144], 32, 4))


def _q5_k(b: torch.Tensor) -> torch.Tensor:  # d, dmin, scales: 12, qh: 32, qs: 128 bytes of nibbles
    return _k_quant_4_5(b, _unpack(b[:, 48:176], 32, 4) | (_unpack(b[:, 16:48], 32, 1) << 4))


def _q6_k(b: torch.Tensor) -> torch.Tensor:  # ql: 128, qh: 64, scales: 16 int8, d
    n = b.shape[0]
    scale = (_f16(b, 208) * b[:, 192:208].view(torch.int8).to(torch.float32)).view(n, 16, 1)
    q = (_unpack(b[:, :128], 64, 4) | (_unpack(b[:, 128:192], 32, 2) << 4)).to(torch.int8) - 32
    return (scale * q.view(n, 16, 16).to(torch.float32)).view(n, 256)


# Each maps blocks [n_blocks, type_size] uint8 to values [n_blocks, block_size] float32.
_BLOCK_DECODERS: dict[GGMLQuantizationType, Callable[[torch.Tensor], torch.Tensor]] = {
    GGMLQuantizationType.Q4_0: _q4_0,
    GGMLQuantizationType.Q4_1: _q4_1,
    GGMLQuantizationType.Q5_0: _q5_0,
    GGMLQuantizationType.Q5_1: _q5_1,
    GGMLQuantizationType.Q8_0: _q8_0,
    GGMLQuantizationType.Q2_K: _q2_k,
    GGMLQuantizationType.Q3_K: _q3_k,
    GGMLQuantizationType.Q4_K: _q4_k,
    GGMLQuantizationType.Q5_K: _q5_k,
    GGMLQuantizationType.Q6_K: _q6_k,
}


def _elements_per_row(raw: torch.Tensor, qtype: GGMLQuantizationType, n_cols: int | None) -> int:
    if qtype not in SUPPORTED_TYPES:
        supported = ", ".join(t.name for t in SUPPORTED_TYPES)
        raise LlamatpError(f"cannot dequantize type {qtype.name} (supported: {supported})")
    if raw.dtype != torch.uint8 or raw.dim() == 0:
        raise LlamatpError(f"expected raw tensor bytes as uint8 rows, got {raw.dtype} of shape {tuple(raw.shape)}")
    elements, nbytes = GGML_QUANT_SIZES[qtype]
    if raw.shape[-1] % nbytes != 0:
        raise LlamatpError(f"rows of {raw.shape[-1]} bytes are not whole {qtype.name} blocks of {nbytes} bytes")
    n = raw.shape[-1] // nbytes * elements
    if n_cols is not None and n_cols != n:
        raise LlamatpError(f"rows of {raw.shape[-1]} bytes hold {n} {qtype.name} values, not {n_cols}")
    return n


def dequantize(raw: torch.Tensor, qtype: GGMLQuantizationType, n_cols: int | None = None) -> torch.Tensor:
    """Decode uint8 rows [..., row_bytes] of `qtype` into float32 [..., elements_per_row].

    `n_cols`, when given, is checked against the number of elements the rows hold.
    F32 rows come back as a view of `raw`'s memory when it is contiguous.
    """
    n = _elements_per_row(raw, qtype, n_cols)
    if raw.numel() == 0:  # a rank's empty slice (no heads of its own)
        return torch.zeros(*raw.shape[:-1], n, dtype=torch.float32, device=raw.device)
    if qtype in _FLOAT_TYPES:
        return raw.contiguous().view(_FLOAT_TYPES[qtype]).to(torch.float32)
    nbytes = GGML_QUANT_SIZES[qtype][1]
    values = _BLOCK_DECODERS[qtype](raw.reshape(-1, nbytes))
    return values.reshape(*raw.shape[:-1], n)


def dequantize_to(
    raw: torch.Tensor, qtype: GGMLQuantizationType, dtype: torch.dtype, chunk_elements: int = 1 << 24
) -> torch.Tensor:
    """`dequantize(raw, qtype).to(dtype)`, a few rows at a time so the float32 values never take
    more than `chunk_elements` at once (an embedding table can be billions of elements)."""
    n = _elements_per_row(raw, qtype, None)
    rows = raw.reshape(math.prod(raw.shape[:-1]), raw.shape[-1])
    out = torch.empty(rows.shape[0], n, dtype=dtype, device=raw.device)
    step = max(1, chunk_elements // max(n, 1))
    for start in range(0, rows.shape[0], step):
        out[start : start + step] = dequantize(rows[start : start + step], qtype)
    return out.reshape(*raw.shape[:-1], n)
