"""Small-batch matrix-vector products that read GGUF quantized weights without dequantizing them.

`repack` rearranges a weight's GGUF blocks once, at load, into planes that the Triton
kernels read with wide coalesced loads; `gemv` then computes x @ W.T for a handful of rows
of x (decode), `dequantize_packed` rebuilds W for the prompt's large matmuls, and
`gather_rows` rebuilds some rows of it (an embedding's, looked up per token).

The unit of work is a *chunk*: 16 bytes of codes, four int32 words, which one thread loads
at once: 32 elements of a 4-bit type (one Q4_0/Q4_1/Q5_0 block, or a sub-block of a K-quant
block, sharing a scale), or 16 elements of Q8_0 (half a block). In a 4-bit chunk, element
4j + w is field j of word w (bits 4j..4j+3). A Q8_0 chunk holds the elements of its block
whose index has bit 2 equal to the chunk's parity p: byte k of word w is element 8k + 4p + w.

Rows are interleaved in tiles of 32: the planes hold, for each tile of rows and each chunk
(or block) of a row, that chunk of the tile's 32 rows side by side. The 32 threads of a warp
each take one row of a tile, so a warp reads one 512-byte run of codes, one run of scales,
and a single value of x that all its threads share (one broadcast load). Rows past the end
are padded with zero scales, which contribute nothing.

    quants      int32 [tiles, chunks, 32, 4]  the low 4 bits of each code (Q8_0: the signed bytes)
    high_bits   int32 [tiles, chunks, 32]     Q5_0/Q5_K: the codes' fifth bits, bit 4j + w for
                                              field j of word w (the order of the elements)
                int16 [tiles, chunks, 32, 4]  Q6_K: the fifth and sixth bits of word w's fields,
                                              at bit 4j for field j < 4, at 4(j-4) + 2 for the others
    scales      float16 [tiles, blocks, 32, S]  d (and Q4_1's m, or a K-quant's dmin) of each block
    sub_scales  [tiles, chunks, 32, 2]        K-quants: the 6-bit scale and min of the sub-block
                                              (uint8), or Q6_K's two signed 8-bit scales

Codes of the 4-, 5- and 6-bit types are stored unsigned, and every type dequantizes as
scale * (code - zero) + offset, the offset being Q4_1's m or a K-quant's -dmin * min.

Decode multiplies in integers, as llama.cpp's CUDA backend does: x is first rounded to 8
bits per block of 32 values (one scale each), and the GEMV sums products of codes and x four
bytes at a time with one `dp4a` instruction. Masking a word's even or odd fields
(word & 0x0F0F0F0F, word >> 4 & 0x0F0F0F0F) gives four codes in four bytes; x is quantized
into words that hold the matching elements, 8k + 4p + w in byte k of word 4p + w of its
block. A few instructions per eight weights keep the GEMV bound by memory, where decoding
each weight to a float is not. The zero points and offsets are applied once per chunk
through the sums of x's halves, which the quantization stores beside each scale. Kernels
that produce a GEMV's input round it as they write it (`store_rounded_blocks` into a
`QuantizedRows`), which saves a kernel per GEMV.

On Hopper and later the GEMV is launched before the kernel that feeds it has ended
(`early_launch`): it loads its first weights meanwhile and waits on the GPU before it reads x.

A tensor-parallel rank repacks only its own slice of the GGUF data: any whole rows, or any
block-aligned range of columns (a multiple of 256 for K-quants).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.errors import LlamatpError

Q = GGMLQuantizationType
ROW_TILE = 32  # rows interleaved in the planes, one per thread of a warp
# Blocks of x per quantization program.
QUANTIZE_BLOCK_B = 32
# Dequantization ors a code into the exponent bits of 2^23, which makes the float 2^23 + code
# exactly, and subtracts 2^23: no integer-to-float conversion. The kernel takes the bits as an
# argument rather than a constant: held in a register, they let the compiler mask a field and
# or them in with one three-input logic instruction.
MAGIC = 0x4B000000

# The types the kernels read, as kernel constants.
Q4_0: tl.constexpr = tl.constexpr(int(Q.Q4_0))
Q4_1: tl.constexpr = tl.constexpr(int(Q.Q4_1))
Q5_0: tl.constexpr = tl.constexpr(int(Q.Q5_0))
Q8_0: tl.constexpr = tl.constexpr(int(Q.Q8_0))
Q4_K: tl.constexpr = tl.constexpr(int(Q.Q4_K))
Q5_K: tl.constexpr = tl.constexpr(int(Q.Q5_K))
Q6_K: tl.constexpr = tl.constexpr(int(Q.Q6_K))
TILE: tl.constexpr = tl.constexpr(ROW_TILE)

_SUPPORTED = (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)


def gemv_supported(qtype: GGMLQuantizationType) -> bool:
    """Whether `repack`/`gemv` handle this type (otherwise dequantize and use a dense matmul)."""
    return qtype in _SUPPORTED


def chunk_size(qtype: GGMLQuantizationType) -> int:
    """Elements per 16-byte chunk of codes."""
    return 16 if qtype == Q.Q8_0 else 32


@dataclass(frozen=True)
class PackedWeight:
    """A [n_rows, n_cols] GGUF weight in the kernels' plane layout (see the module docstring)."""

    qtype: GGMLQuantizationType
    n_rows: int
    n_cols: int
    quants: torch.Tensor
    high_bits: torch.Tensor | None
    scales: torch.Tensor
    sub_scales: torch.Tensor | None
    # One counter per tile of rows for split-K: the last program of a tile to finish adds
    # the partial sums, then resets the counter to zero for the next call.
    split_counters: torch.Tensor

    @property
    def n_chunks(self) -> int:
        return self.n_cols // chunk_size(self.qtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the planes the GEMV reads."""
        planes = (self.quants, self.high_bits, self.scales, self.sub_scales)
        return sum(p.numel() * p.element_size() for p in planes if p is not None)


@dataclass(frozen=True)
class QuantizedRows:
    """Rows of x rounded for the GEMV (see `quantize_rows`): words int32 [M, K / 32, 8] and
    meta float32 [M, K / 32, 4]. Kernels that produce a GEMV's input can fill one directly."""

    words: torch.Tensor
    meta: torch.Tensor

    @staticmethod
    def empty(n_rows: int, n_cols: int, device: torch.device) -> QuantizedRows:
        words = torch.empty(n_rows, n_cols // 32, 8, dtype=torch.int32, device=device)
        return QuantizedRows(words, torch.empty(n_rows, n_cols // 32, 4, dtype=torch.float32, device=device))


@dataclass(frozen=True)
class GemvConfig:
    """How `gemv` tiles the product: rows and chunks per program step, how many programs
    share each row's chunks (split-K), and warps per program."""

    block_n: int
    block_c: int
    split_k: int
    num_warps: int


@dataclass(frozen=True)
class Tiling:
    """A batch-1 tiling for `pick_config`: split K until there are `programs_per_sm` programs
    per multiprocessor."""

    block_n: int
    block_c: int
    num_warps: int
    programs_per_sm: int


# Weights with at least this many rows fill the GPU with row tiles alone (gate/up
# projections, the output head); the others (attention, down projections) split K.
MANY_ROWS = 8192
DEFAULT_TILING = Tiling(block_n=32, block_c=4, num_warps=4, programs_per_sm=4)
# Batch-1 tilings by (type, has MANY_ROWS rows), as printed by `scripts/bench_gemv.py --sweep`
# on an H100; other types take DEFAULT_TILING.
TILINGS: dict[tuple[GGMLQuantizationType, bool], Tiling] = {
    (Q.Q4_0, False): Tiling(block_n=32, block_c=4, num_warps=2, programs_per_sm=8),
    (Q.Q4_0, True): Tiling(block_n=64, block_c=4, num_warps=4, programs_per_sm=4),
    (Q.Q8_0, False): Tiling(block_n=32, block_c=4, num_warps=4, programs_per_sm=8),
    (Q.Q8_0, True): Tiling(block_n=64, block_c=4, num_warps=4, programs_per_sm=4),
    (Q.Q4_K, False): Tiling(block_n=32, block_c=4, num_warps=4, programs_per_sm=4),
    (Q.Q4_K, True): Tiling(block_n=64, block_c=4, num_warps=4, programs_per_sm=4),
    (Q.Q6_K, False): Tiling(block_n=32, block_c=4, num_warps=2, programs_per_sm=4),
    (Q.Q6_K, True): Tiling(block_n=32, block_c=2, num_warps=2, programs_per_sm=8),
}


@dataclass(frozen=True)
class DequantTiling:
    """Units of 32 columns per dequantization program (of one tile of rows), and its warps."""

    block_u: int
    num_warps: int


DEFAULT_DEQUANT_TILING = DequantTiling(block_u=8, num_warps=4)
# By type, as printed by `scripts/bench_gemv.py --sweep` on an H100; other types take the default.
DEQUANT_TILINGS: dict[GGMLQuantizationType, DequantTiling] = {
    Q.Q4_0: DequantTiling(block_u=4, num_warps=8),
    Q.Q8_0: DequantTiling(block_u=8, num_warps=8),
    Q.Q4_K: DequantTiling(block_u=2, num_warps=4),
    Q.Q6_K: DequantTiling(block_u=2, num_warps=4),
}


# ---------------------------------------------------------------------------------------------
# Repacking (torch, once at load)


def _f16(fields: torch.Tensor) -> torch.Tensor:
    """[..., 2 * k] uint8 -> [..., k] float16."""
    return fields.contiguous().view(torch.float16)


def _k_scales_mins(packed: torch.Tensor) -> torch.Tensor:
    """The eight 6-bit (scale, min) pairs of Q4_K/Q5_K: [..., 12] uint8 -> [..., 8, 2] uint8."""
    low, mid, high = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    scales = torch.cat([low & 63, (high & 15) | ((low >> 6) << 4)], dim=-1)
    mins = torch.cat([mid & 63, (high >> 4) | ((mid >> 6) << 4)], dim=-1)
    return torch.stack([scales, mins], dim=-1)


def _decode(blocks: torch.Tensor, qtype: GGMLQuantizationType) -> tuple[torch.Tensor, ...]:
    """Codes in column order (unsigned; Q8_0's signed), and scales: blocks [rows, n_blocks, type_size] uint8 ->
    (codes [rows, cols] uint8, scales [rows, n_blocks, S] f16, sub_scales [rows, cols / 32, 2] | None).
    """
    rows, n_blocks, _ = blocks.shape
    dev = blocks.device
    sub_scales = None
    if qtype in (Q.Q4_0, Q.Q4_1, Q.Q5_0):
        n_scales = 2 if qtype == Q.Q4_1 else 1
        scales = _f16(blocks[..., : 2 * n_scales])
        qs = blocks[..., 2 * n_scales + (4 if qtype == Q.Q5_0 else 0) :]
        codes = torch.cat([qs & 15, qs >> 4], dim=-1)  # byte i holds elements i and i + 16
        if qtype == Q.Q5_0:
            qh = blocks[..., 2:6]  # a little-endian uint32: bit i is element i's fifth bit
            bits = (qh.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8, device=dev)) & 1
            codes = codes | (bits.reshape(rows, n_blocks, 32) << 4)
    elif qtype == Q.Q8_0:
        scales = _f16(blocks[..., :2])
        codes = blocks[..., 2:]  # int8
    elif qtype in (Q.Q4_K, Q.Q5_K):
        scales = _f16(blocks[..., :4])  # d, dmin
        sub_scales = _k_scales_mins(blocks[..., 4:16]).reshape(rows, -1, 2)
        qs = blocks[..., (48 if qtype == Q.Q5_K else 16) :].reshape(rows, n_blocks, 4, 1, 32)
        codes = torch.cat([qs & 15, qs >> 4], dim=3)  # 32 bytes: sub-block 2i low, 2i+1 high nibbles
        if qtype == Q.Q5_K:
            qh = blocks[..., 16:48].reshape(rows, n_blocks, 1, 32)  # bit i: sub-block i's fifth bit
            bits = (qh >> torch.arange(8, dtype=torch.uint8, device=dev).view(8, 1)) & 1
            codes = codes | (bits.reshape(codes.shape) << 4)
    elif qtype == Q.Q6_K:
        scales = _f16(blocks[..., 208:210])
        sub_scales = blocks[..., 192:208].contiguous().view(torch.int8).reshape(rows, -1, 2)
        ql = blocks[..., :128].reshape(rows, n_blocks, 2, 2, 32)  # (half, 32-byte run, byte)
        qh = blocks[..., 128:192].reshape(rows, n_blocks, 2, 1, 32)
        low = torch.cat([ql & 15, ql >> 4], dim=3)  # quarter q of a half: run q % 2, nibble q // 2
        high = (qh >> (2 * torch.arange(4, dtype=torch.uint8, device=dev)).view(4, 1)) & 3
        codes = low | (high << 4)
    else:
        raise LlamatpError(f"no GEMV kernel for {qtype.name} weights")
    return codes.reshape(rows, -1), scales, sub_scales


def _pack_planes(codes: torch.Tensor, qtype: GGMLQuantizationType) -> tuple[torch.Tensor, torch.Tensor | None]:
    """codes [rows, cols] uint8 -> (quants [rows, chunks, 4] int32, high_bits | None)."""
    rows, cols = codes.shape
    if qtype == Q.Q8_0:  # element 8k + 4p + w of a block -> chunk p, word w, byte k
        words = codes.reshape(rows, cols // 32, 4, 2, 4).permute(0, 1, 3, 4, 2)
        return words.reshape(rows, cols // 16, 4, 4).contiguous().view(torch.int32).squeeze(-1), None
    fields = codes.reshape(rows, cols // 32, 8, 4).transpose(-1, -2)  # [rows, chunks, word, field]
    nibbles = fields & 15
    quants = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).contiguous().view(torch.int32).squeeze(-1)
    if qtype not in (Q.Q5_0, Q.Q5_K, Q.Q6_K):
        return quants, None
    high = fields >> 4
    if qtype == Q.Q6_K:
        # An int16 per word: the 2-bit fields of j = 0..3 at bits 4j, of j = 4..7 at 4(j-4) + 2,
        # so that one shift per word puts every field of a half right above its nibble.
        slots = high[..., [0, 4, 1, 5, 2, 6, 3, 7]].reshape(rows, -1, 4, 2, 4)
        shifts = 2 * torch.arange(4, dtype=torch.uint8, device=codes.device)
        return quants, (slots << shifts).sum(-1, dtype=torch.uint8).view(torch.int16).squeeze(-1)
    # An int32 per chunk, bit i for element i.
    bits = high.transpose(-1, -2).reshape(rows, -1, 4, 8)
    shifts = torch.arange(8, dtype=torch.uint8, device=codes.device)
    return quants, (bits << shifts).sum(-1, dtype=torch.uint8).view(torch.int32).squeeze(-1)


def _interleave_rows(plane: torch.Tensor) -> torch.Tensor:
    """[rows, units, ...] -> [tiles, units, ROW_TILE, ...], rows padded with zeros to whole tiles."""
    rows = plane.shape[0]
    padded = triton.cdiv(rows, ROW_TILE) * ROW_TILE
    if padded != rows:
        plane = torch.cat([plane, plane.new_zeros(padded - rows, *plane.shape[1:])])
    return plane.reshape(padded // ROW_TILE, ROW_TILE, *plane.shape[1:]).transpose(1, 2).contiguous()


def repack(raw: torch.Tensor, qtype: GGMLQuantizationType, n_rows: int, n_cols: int) -> PackedWeight:
    """Rearrange GGUF blocks [n_rows, row_bytes] uint8 (on the target device) for the kernels.

    `raw` may be any slice of whole blocks of a larger tensor: some rows, or a block-aligned
    range of each row's bytes.
    """
    if not gemv_supported(qtype):
        raise LlamatpError(f"no GEMV kernel for {qtype.name} weights")
    block, type_size = GGML_QUANT_SIZES[qtype]
    if n_cols % block != 0:
        raise LlamatpError(f"{qtype.name} weight with {n_cols} columns is not a whole number of {block}-element blocks")
    n_blocks = n_cols // block
    if raw.dtype != torch.uint8 or tuple(raw.shape) != (n_rows, n_blocks * type_size):
        raise LlamatpError(
            f"{qtype.name} weight data is {tuple(raw.shape)} {raw.dtype}, "
            f"expected ({n_rows}, {n_blocks * type_size}) uint8 for {n_rows}x{n_cols}"
        )
    planes: list[list[torch.Tensor | None]] = [[], [], [], []]
    # Decode a bounded number of rows at a time (whole tiles): the intermediate tensors are
    # several times the size of the codes.
    rows_per_step = max(1, (1 << 24) // (n_cols * ROW_TILE)) * ROW_TILE
    for start in range(0, n_rows, rows_per_step):
        blocks = raw[start : start + rows_per_step].reshape(-1, n_blocks, type_size)
        codes, scales, sub_scales = _decode(blocks, qtype)
        for plane, part in zip(planes, (*_pack_planes(codes, qtype), scales, sub_scales)):
            plane.append(None if part is None else _interleave_rows(part))
    quants, high_bits, scales, sub_scales = (None if p[0] is None else torch.cat(p) for p in planes)  # type: ignore
    assert quants is not None and scales is not None
    counters = torch.zeros(quants.shape[0], dtype=torch.int32, device=raw.device)
    return PackedWeight(qtype, n_rows, n_cols, quants, high_bits, scales, sub_scales, counters)


# ---------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _dp4a(a, b, c, EMULATE: tl.constexpr):
    """c + the dot product of the four signed bytes of a with those of b (int32 tensors)."""
    if EMULATE:  # Triton's interpreter runs no PTX
        total = c
        for k in tl.static_range(4):
            total += ((a << (24 - 8 * k)) >> 24) * ((b << (24 - 8 * k)) >> 24)
    else:  # a holds the full shape; b and c may broadcast
        b = tl.broadcast_to(b, a.shape)
        c = tl.zeros_like(a) + c
        total = tl.inline_asm_elementwise(
            "dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32, is_pure=True, pack=1
        )
    return total


@triton.jit
def wait_for_inputs(EARLY: tl.constexpr):
    """For a kernel launched early (`early_launch_args`): wait until the kernel before this
    one has finished and its writes are visible, then let the next kernel launch (not before:
    a chain of kernels waiting on one another would hold the multiprocessors)."""
    if EARLY:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def let_next_launch_then_wait(EARLY: tl.constexpr):
    """`wait_for_inputs` with the next kernel let launch first, so that it runs beside the
    kernels before this one: for a kernel of a few programs whose successor has reading to do
    before it waits."""
    if EARLY:
        tl.extra.cuda.gdc_launch_dependents()
        tl.extra.cuda.gdc_wait()


@triton.jit
def round_q8_blocks(x):
    """Blocks of 32 values, x [B, 32] float32, as q8_0 rounds them: codes (int32, -127..127)
    and one scale d each, the largest magnitude of a block mapping to 127."""
    amax = tl.max(tl.abs(x), axis=1)
    inv = tl.where(amax > 0, 127.0 / tl.where(amax > 0, amax, 1.0), 0.0)
    # Adding 1.5 * 2^23 rounds to the nearest integer, which lands in the low mantissa bits.
    codes = (x * inv[:, None] + 12582912.0).to(tl.int32, bitcast=True) - 0x4B400000
    return codes, amax / 127.0


@triton.jit
def store_rounded_blocks(words_ptr, meta_ptr, at, x, ok):
    """Round blocks of 32 values, x [B, 32] float32, to 8-bit codes with one scale each, and
    store them at block indices `at` [B] where `ok` [B]: the codes in the GEMV's order (see the
    module docstring) and meta: the scale d, and d times the sum of the codes of values 0-15,
    of values 16-31, and of all 32. Kernels that produce a GEMV's input call this too."""
    BLOCKS: tl.constexpr = x.shape[0]
    e = tl.arange(0, 32)[None, :]
    codes, d = round_q8_blocks(x)
    sum_lo = tl.sum(tl.where(e < 16, codes, 0), axis=1)
    sum_hi = tl.sum(tl.where(e < 16, 0, codes), axis=1)
    placed = (codes & 0xFF) << (8 * (e // 8))  # element 8k + 4p + w -> byte k of word 4p + w
    words = tl.sum(tl.reshape(placed, [BLOCKS, 4, 8]), axis=1)
    tl.store(words_ptr + at[:, None] * 8 + tl.arange(0, 8)[None, :], words, mask=ok[:, None])
    tl.store(meta_ptr + at * 4, d, mask=ok)
    tl.store(meta_ptr + at * 4 + 1, sum_lo.to(tl.float32) * d, mask=ok)
    tl.store(meta_ptr + at * 4 + 2, sum_hi.to(tl.float32) * d, mask=ok)
    tl.store(meta_ptr + at * 4 + 3, (sum_lo + sum_hi).to(tl.float32) * d, mask=ok)


@triton.jit
def _quantize_kernel(x_ptr, words_ptr, meta_ptr, n_blocks, BLOCK_B: tl.constexpr, EARLY: tl.constexpr):
    """BLOCK_B blocks of 32 values of one row of x through `store_rounded_blocks`."""
    wait_for_inputs(EARLY)
    row = tl.program_id(0).to(tl.int64)
    blocks = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = blocks < n_blocks
    e = tl.arange(0, 32)
    x = tl.load(x_ptr + (row * n_blocks + blocks[:, None]) * 32 + e[None, :], mask=ok[:, None], other=0.0)
    store_rounded_blocks(words_ptr, meta_ptr, row * n_blocks + blocks, x.to(tl.float32), ok)


@triton.jit
def _even_odd_codes(words, high, QTYPE: tl.constexpr):
    """A 4-, 5- or 6-bit chunk's codes as bytes: fields 0, 2, 4, 6 of each word, and fields
    1, 3, 5, 7, each field in the byte of the x value it pairs with."""
    even = words & 0x0F0F0F0F
    odd = (words >> 4) & 0x0F0F0F0F
    if QTYPE == Q5_0 or QTYPE == Q5_K:  # field j of word w has its fifth bit at bit 4j + w of `high`
        w = tl.arange(0, 4)[None, None, :]
        even |= ((high >> w) & 0x01010101) << 4
        odd |= ((high >> (w + 4)) & 0x01010101) << 4
    if QTYPE == Q6_K:  # fields 0, 2, 4, 6 of a word have their top two bits at bits 0, 8, 2, 10
        even |= ((high & 0x0303) << 4) | ((high & 0x0C0C) << 18)
        odd |= (((high >> 4) & 0x0303) << 4) | (((high >> 4) & 0x0C0C) << 18)
    return even, odd


@triton.jit
def _interleaved(rows, units, n_units):
    """The entry of a row's unit (chunk or block) in a plane of interleaved rows."""
    return ((rows // TILE) * n_units + units) * TILE + rows % TILE


@triton.jit
def _load_chunks(quants_ptr, high_ptr, scales_ptr, sub_ptr, rows, chunks, n_chunks, mask, QTYPE: tl.constexpr):
    """The words of the chunks (chunks x rows) and their scales: returns words [C, R, 4]
    int32, high [C, R, 1 or 4] int32 (or 0), and [C, R, 1] float32 tensors scale_lo, scale_hi
    and offset: a value is (code - zero) * scale + offset, with Q6_K's scale_lo for the
    chunk's values 0-15 (fields 0-3 of the words) and scale_hi for the others. The codes are
    read once: they need not stay in the cache.
    """
    CHUNKS_PER_BLOCK: tl.constexpr = 2 if QTYPE == Q8_0 else 8 if QTYPE == Q4_K or QTYPE == Q5_K or QTYPE == Q6_K else 1
    mask = mask[:, :, None]
    w_idx = tl.arange(0, 4)[None, None, :]
    words_at = _interleaved(rows[None, :, None], chunks[:, None, None], n_chunks) * 4 + w_idx
    words = tl.load(quants_ptr + words_at, mask=mask, other=0, eviction_policy="evict_first")
    # Indices of one value per chunk, in which Triton cannot see that neighbouring rows are
    # neighbours in memory: it then loads them one per thread, in the words' register layout,
    # rather than as vectors in a layout of its own that would reach the words through shared
    # memory and barriers.
    at = tl.where(mask, _interleaved(rows[None, :, None], chunks[:, None, None], n_chunks), 0)
    block = _interleaved(rows[None, :, None], chunks[:, None, None] // CHUNKS_PER_BLOCK, n_chunks // CHUNKS_PER_BLOCK)
    block = tl.where(mask, block, 0)
    high = 0
    if QTYPE == Q5_0 or QTYPE == Q5_K:
        high = tl.load(high_ptr + at, mask=mask, other=0, eviction_policy="evict_first")
    if QTYPE == Q6_K:
        high = tl.load(high_ptr + words_at, mask=mask, other=0, eviction_policy="evict_first").to(tl.int32)

    offset = tl.zeros(at.shape, tl.float32)
    if QTYPE == Q4_1:
        scale_lo = tl.load(scales_ptr + block * 2, mask=mask, other=0).to(tl.float32)
        scale_hi = scale_lo
        offset = tl.load(scales_ptr + block * 2 + 1, mask=mask, other=0).to(tl.float32)
    elif QTYPE == Q6_K:  # a scale per 16 elements: fields 0-3 of the words, then fields 4-7
        d = tl.load(scales_ptr + block, mask=mask, other=0).to(tl.float32)
        scale_lo = d * tl.load(sub_ptr + at * 2, mask=mask, other=0).to(tl.float32)
        scale_hi = d * tl.load(sub_ptr + at * 2 + 1, mask=mask, other=0).to(tl.float32)
    elif QTYPE == Q4_K or QTYPE == Q5_K:
        d = tl.load(scales_ptr + block * 2, mask=mask, other=0).to(tl.float32)
        dmin = tl.load(scales_ptr + block * 2 + 1, mask=mask, other=0).to(tl.float32)
        scale_lo = d * tl.load(sub_ptr + at * 2, mask=mask, other=0).to(tl.float32)
        scale_hi = scale_lo
        offset = -dmin * tl.load(sub_ptr + at * 2 + 1, mask=mask, other=0).to(tl.float32)
    else:  # Q4_0, Q5_0, Q8_0
        scale_lo = tl.load(scales_ptr + block, mask=mask, other=0).to(tl.float32)
        scale_hi = scale_lo
    return words, high, scale_lo, scale_hi, offset


@triton.jit
def _field(values, k: tl.constexpr):
    """values[..., k] of a tensor whose last axis (of 4) one thread holds, kept as an axis of 1."""
    return tl.sum(tl.where(tl.arange(0, 4)[None, None, :] == k, values, 0.0), axis=2, keep_dims=True)


@triton.jit
def _gemv_kernel(
    x_words_ptr, x_meta_ptr, out_ptr, partial_ptr, counter_ptr, quants_ptr, high_ptr, scales_ptr, sub_ptr,
    M, N, n_chunks, chunks_per_split, split_k,
    QTYPE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
    SPLIT: tl.constexpr, EMULATE: tl.constexpr, EARLY: tl.constexpr,
):  # fmt: skip
    """out[m, n] = sum over k of x[m, k] * W[n, k], for one tile of rows and one share of K.

    With EARLY, the kernel may start while the kernel before it still runs (programmatic
    dependent launch, see `early_launch`): it loads its first weights, which nothing writes,
    and waits for the earlier kernel to finish before it reads x or writes anything.

    A step is a [BLOCK_C chunks, BLOCK_N rows, 4 words] tile: the threads of a warp hold one
    chunk of 32 rows, and load x's words for that chunk at one address, which the cache
    serves to all of them at once. Each step loads the next step's chunks before working on
    its own, so that a program keeps a step's bytes in flight while it computes.
    """
    ZERO: tl.constexpr = 8 if QTYPE == Q4_0 else 16 if QTYPE == Q5_0 else 32 if QTYPE == Q6_K else 0
    n_x_blocks = n_chunks // 2 if QTYPE == Q8_0 else n_chunks
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    c_begin = pid_k * chunks_per_split
    c_end = tl.minimum(c_begin + chunks_per_split, n_chunks)
    batch_row = tl.arange(0, BLOCK_M)
    w_idx = tl.arange(0, 4)[None, None, :]
    same_for_all_rows = 0 * rows[None, :, None]  # gives x's indices the shape of the tile
    acc = tl.zeros([BLOCK_C, BLOCK_N, BLOCK_M], tl.float32)
    batch_col = tl.arange(0, BLOCK_M)[None, None, :]
    chunks = c_begin + tl.arange(0, BLOCK_C)
    mask = (chunks < c_end)[:, None] & row_ok[None, :]
    next_chunks = _load_chunks(quants_ptr, high_ptr, scales_ptr, sub_ptr, rows, chunks, n_chunks, mask, QTYPE)
    wait_for_inputs(EARLY)
    for c0 in range(c_begin, c_end, BLOCK_C):
        chunks = c0 + tl.arange(0, BLOCK_C)
        x_ok = (chunks < c_end)[:, None, None]
        words, high, scale_lo, scale_hi, offset = next_chunks
        ahead = chunks + BLOCK_C  # past the end, the mask keeps the loads off memory
        mask = (ahead < c_end)[:, None] & row_ok[None, :]
        next_chunks = _load_chunks(quants_ptr, high_ptr, scales_ptr, sub_ptr, rows, ahead, n_chunks, mask, QTYPE)
        if QTYPE == Q8_0:
            x_block = (chunks // 2)[:, None, None] + same_for_all_rows
            x_word = x_block * 8 + (chunks % 2)[:, None, None] * 4 + w_idx
        else:
            x_block = chunks[:, None, None] + same_for_all_rows
            x_word = x_block * 8 + w_idx
            even, odd = _even_odd_codes(words, high, QTYPE)
        for m in tl.static_range(BLOCK_M):
            x_row = tl.minimum(m, M - 1) * n_x_blocks  # padding rows repeat the last; never stored
            x_lo = tl.load(x_words_ptr + x_row * 8 + x_word, mask=x_ok, other=0)
            meta = tl.load(x_meta_ptr + (x_row + x_block) * 4 + w_idx, mask=x_ok, other=0.0)
            x_scale = _field(meta, 0)
            if QTYPE == Q8_0:
                dot = tl.sum(_dp4a(words, x_lo, 0, EMULATE), axis=2, keep_dims=True)
                part = scale_lo * (x_scale * dot.to(tl.float32))
            else:
                x_hi = tl.load(x_words_ptr + x_row * 8 + x_word + 4, mask=x_ok, other=0)
                if QTYPE == Q6_K:  # bytes 0-1 of every word pair with values 0-15 (scale_lo)
                    dot_lo = _dp4a(even & 0xFFFF, x_lo, _dp4a(odd & 0xFFFF, x_hi, 0, EMULATE), EMULATE)
                    dot_hi = _dp4a(even & -65536, x_lo, _dp4a(odd & -65536, x_hi, 0, EMULATE), EMULATE)
                    dot_lo = tl.sum(dot_lo, axis=2, keep_dims=True).to(tl.float32)
                    dot_hi = tl.sum(dot_hi, axis=2, keep_dims=True).to(tl.float32)
                    part = scale_lo * (x_scale * dot_lo - ZERO * _field(meta, 1))
                    part += scale_hi * (x_scale * dot_hi - ZERO * _field(meta, 2))
                else:
                    dot = tl.sum(_dp4a(even, x_lo, _dp4a(odd, x_hi, 0, EMULATE), EMULATE), axis=2, keep_dims=True)
                    x_sum = _field(meta, 3)
                    part = scale_lo * (x_scale * dot.to(tl.float32) - ZERO * x_sum) + offset * x_sum
            acc += tl.where(batch_col == m, part, 0.0)
    out = tl.sum(acc, axis=0)  # [rows, batch]
    out_offs = batch_row[None, :] * N + rows[:, None]
    out_mask = (batch_row[None, :] < M) & row_ok[:, None]
    if SPLIT:
        # Publish this share and count it; the tile's last program adds all shares up.
        tl.store(partial_ptr + pid_k * M * N + out_offs, out, mask=out_mask)
        tl.debug_barrier()  # every thread's share is stored before the count is released
        if tl.atomic_add(counter_ptr + pid_n, 1, sem="acq_rel") == split_k - 1:
            total = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
            for k in range(split_k):
                total += tl.load(partial_ptr + k * M * N + out_offs, mask=out_mask, other=0.0, cache_modifier=".cg")
            tl.store(out_ptr + out_offs, total.to(out_ptr.dtype.element_ty), mask=out_mask)
            tl.store(counter_ptr + pid_n, 0)
    else:
        tl.store(out_ptr + out_offs, out.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _dequant_kernel(
    out_ptr, quants_ptr, high_ptr, scales_ptr, sub_ptr, n_rows, n_units, magic,
    QTYPE: tl.constexpr, BLOCK_U: tl.constexpr,
):  # fmt: skip
    """out = W for one tile of 32 rows and BLOCK_U units of 32 columns: a chunk, or for Q8_0
    a block of two chunks.

    The tile is [row, unit, element e of the unit]: neighbouring threads hold neighbouring
    elements of a row, eight each, so every store writes 16 contiguous bytes and the stores
    of a warp one run of the row.
    """
    tile = tl.program_id(0).to(tl.int64)
    r = tl.arange(0, TILE)[:, None, None]
    unit = tl.program_id(1) * BLOCK_U + tl.arange(0, BLOCK_U)[None, :, None]
    e = tl.arange(0, 32)[None, None, :]
    row = tile * TILE + r
    ok = (unit < n_units) & (row < n_rows)
    out = _dequant_values(quants_ptr, high_ptr, scales_ptr, sub_ptr, row, unit, e, ok, n_units, magic, QTYPE)
    at_out = row * (n_units * 32) + unit * 32 + e
    tl.store(out_ptr + at_out, out.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _gather_rows_kernel(
    out_ptr, ids_ptr, quants_ptr, high_ptr, scales_ptr, sub_ptr, first, n_rows, n_units, scale, magic,
    QTYPE: tl.constexpr, BLOCK_U: tl.constexpr, EARLY: tl.constexpr,
):  # fmt: skip
    """out[t] = W[ids[t] - first] * scale for BLOCK_U units of 32 columns; zeros where that row
    is not one of W's rows."""
    wait_for_inputs(EARLY)
    t = tl.program_id(0)
    unit = tl.program_id(1) * BLOCK_U + tl.arange(0, BLOCK_U)[:, None]
    e = tl.arange(0, 32)[None, :]
    row = tl.load(ids_ptr + t + 0 * unit).to(tl.int64) - first  # the same id for every unit
    held = (row >= 0) & (row < n_rows)
    in_row = unit < n_units
    # Masked loads give a zero scale, hence zeros, for a row W does not hold.
    out = _dequant_values(quants_ptr, high_ptr, scales_ptr, sub_ptr, tl.where(held, row, 0), unit, e,
                          in_row & held, n_units, magic, QTYPE)
    tl.store(out_ptr + t * (n_units * 32) + unit * 32 + e, (out * scale).to(out_ptr.dtype.element_ty), mask=in_row)


@triton.jit
def _dequant_values(quants_ptr, high_ptr, scales_ptr, sub_ptr, row, unit, e, ok, n_units, magic,
                    QTYPE: tl.constexpr):
    """W's element e of unit `unit` (32 columns) of row `row`, float32, where `ok` (0 elsewhere);
    the indices broadcast to one shape whose last axis is e.

    A thread loads the four words of its chunk at once (the threads of a chunk load the same
    16 bytes, which the cache serves once), and takes its elements' fields from them: field
    e // 4 of word e % 4 (Q8_0: byte e // 8 of word e % 4 of the block's chunk (e // 4) % 2).
    """
    ZERO: tl.constexpr = (
        8 if QTYPE == Q4_0 else 16 if QTYPE == Q5_0 else 128 if QTYPE == Q8_0 else 32 if QTYPE == Q6_K else 0
    )
    K_QUANT: tl.constexpr = QTYPE == Q4_K or QTYPE == Q5_K or QTYPE == Q6_K
    if QTYPE == Q8_0:
        chunk = 2 * unit + (e // 4) % 2
        shift = 8 * (e // 8)
        n_chunks = 2 * n_units
    else:
        chunk = unit
        shift = 4 * (e // 4)
        n_chunks = n_units
    entry = _interleaved(row, chunk, n_chunks)
    words = tl.load(quants_ptr + entry * 4 + e % 4, mask=ok, other=0, eviction_policy="evict_first")
    code = (words >> shift) & (255 if QTYPE == Q8_0 else 15)
    if QTYPE == Q8_0:  # signed bytes -> offset by 128
        code ^= 0x80
    # Entries of one value per unit, in which Triton cannot see that neighbouring rows are
    # neighbours in memory (it would load them in a layout of their own). A single such
    # value per unit (a scale) is then moved into the tile's layout through shared memory;
    # where several are (Q4_1, K-quants), Triton moves the whole tile instead, so those
    # and the Q5 bits are loaded per element, the cache serving the repeats.
    at = tl.where(ok, entry, 0)
    n_blocks = n_units // 8 if K_QUANT else n_units
    block = tl.where(ok, _interleaved(row, unit // 8 if K_QUANT else unit, n_blocks), 0)
    if QTYPE == Q4_1 or K_QUANT:
        at += 0 * e
        block += 0 * e
    if QTYPE == Q5_0 or QTYPE == Q5_K:  # element e's fifth bit is bit e
        high = tl.load(high_ptr + at + 0 * e, mask=ok, other=0, eviction_policy="evict_first")
        code |= ((high >> e) & 1) << 4
    if QTYPE == Q6_K:  # field j of a word has its top two bits at bit 4(j % 4) + 2(j // 4)
        high = tl.load(high_ptr + entry * 4 + e % 4, mask=ok, other=0, eviction_policy="evict_first").to(tl.int32)
        j = e // 4
        code |= ((high >> (4 * (j % 4) + 2 * (j // 4))) & 3) << 4
    value = (code | magic).to(tl.float32, bitcast=True) - (8388608.0 + ZERO)
    offset = 0.0
    if QTYPE == Q4_1:
        scale = tl.load(scales_ptr + block * 2, mask=ok, other=0).to(tl.float32)
        offset = tl.load(scales_ptr + block * 2 + 1, mask=ok, other=0).to(tl.float32)
    elif QTYPE == Q6_K:  # a scale per 16 elements
        d = tl.load(scales_ptr + block, mask=ok, other=0).to(tl.float32)
        scale_lo = tl.load(sub_ptr + at * 2, mask=ok, other=0).to(tl.float32)
        scale_hi = tl.load(sub_ptr + at * 2 + 1, mask=ok, other=0).to(tl.float32)
        scale = d * tl.where(e < 16, scale_lo, scale_hi)
    elif QTYPE == Q4_K or QTYPE == Q5_K:
        d = tl.load(scales_ptr + block * 2, mask=ok, other=0).to(tl.float32)
        dmin = tl.load(scales_ptr + block * 2 + 1, mask=ok, other=0).to(tl.float32)
        scale = d * tl.load(sub_ptr + at * 2, mask=ok, other=0).to(tl.float32)
        offset = -dmin * tl.load(sub_ptr + at * 2 + 1, mask=ok, other=0).to(tl.float32)
    else:  # Q4_0, Q5_0, Q8_0
        scale = tl.load(scales_ptr + block, mask=ok, other=0).to(tl.float32)
    return value * scale + offset


# ---------------------------------------------------------------------------------------------
# Launchers


@functools.cache
def sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


@functools.cache
def max_shared_memory(device: torch.device) -> int:
    """Bytes of shared memory one program may take on this GPU (Triton's own launch limit)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return triton.runtime.driver.active.utils.get_device_properties(index)["max_shared_mem"]


@functools.cache
def memory_bandwidth(device: torch.device) -> float:
    """The GPU memory's rated bytes a second: two transfers a clock over the bus."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = triton.runtime.driver.active.utils.get_device_properties(index)
    return 2 * props["mem_clock_rate"] * 1e3 * props["mem_bus_width"] / 8


def pick_config(w: PackedWeight, batch: int, sm_count: int, tiling: Tiling | None = None) -> GemvConfig:
    """A tiling for `batch` rows of x times `w` on a GPU with `sm_count` multiprocessors.

    The tiling for batch 1 comes from TILINGS unless given; larger batches hold fewer chunks
    per step (each row of x costs registers). When the row tiles alone would give the
    multiprocessors fewer programs than the tiling's `programs_per_sm`, K is split.
    """
    tiling = tiling or TILINGS.get((w.qtype, w.n_rows >= MANY_ROWS), DEFAULT_TILING)
    block_c = min(tiling.block_c, triton.next_power_of_2(w.n_chunks))
    if batch > 1:
        block_c = max(tiling.num_warps, block_c // (2 if batch <= 4 else 4))
    block_n = tiling.block_n
    tiles = triton.cdiv(w.n_rows, block_n)
    split_k = 1
    while tiles * split_k < tiling.programs_per_sm * sm_count and w.n_chunks >= 2 * split_k * block_c:
        split_k *= 2
    return GemvConfig(block_n=block_n, block_c=block_c, split_k=split_k, num_warps=tiling.num_warps)


def gemv(
    x: torch.Tensor, w: PackedWeight, config: GemvConfig | None = None, rounded: QuantizedRows | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """x [..., n_cols] (float32, float16 or bfloat16; a few rows) @ W.T -> [..., n_rows] in
    `out_dtype` (default: x's dtype).

    x is rounded to 8 bits per 32 values (see the module docstring), products are summed
    in integers, and the rest in float32. `rounded` is x already rounded, if the kernel that
    made x did so (or another GEMV of the same x). The first call for a given weight type, tiling, batch size and
    dtype compiles the kernel: make it before capturing a CUDA graph (a warm-up step), since
    compilation cannot happen during capture. No autotuning runs: `pick_config` decides,
    unless `config` is given.
    """
    if x.shape[-1] != w.n_cols:
        raise LlamatpError(f"input has {x.shape[-1]} features, the {w.n_rows}x{w.n_cols} weight expects {w.n_cols}")
    x2 = x.reshape(-1, w.n_cols).contiguous()
    batch = x2.shape[0]
    if batch == 0:
        return x.new_empty(*x.shape[:-1], w.n_rows)
    cfg = config or pick_config(w, batch, sm_count(x.device))
    if cfg.block_n % ROW_TILE != 0:
        raise LlamatpError(f"GEMV programs must hold whole tiles of {ROW_TILE} rows, not {cfg.block_n}")
    chunks_per_split = triton.cdiv(triton.cdiv(w.n_chunks, cfg.split_k), cfg.block_c) * cfg.block_c
    split_k = triton.cdiv(w.n_chunks, chunks_per_split)
    if rounded is None:
        rounded = quantize_rows(x2)
    elif tuple(rounded.words.shape[:2]) != (batch, w.n_cols // 32):
        raise LlamatpError(f"rounded x holds {tuple(rounded.words.shape[:2])} blocks, not {(batch, w.n_cols // 32)}")
    out = torch.empty(batch, w.n_rows, dtype=out_dtype or x.dtype, device=x.device)
    partials = torch.empty(split_k, batch, w.n_rows, dtype=torch.float32, device=x.device) if split_k > 1 else out
    grid = (triton.cdiv(w.n_rows, cfg.block_n), split_k)
    # Fused multiply-adds are asked for explicitly: Triton's default is changing to off.
    _gemv_kernel[grid](
        rounded.words, rounded.meta, out, partials, w.split_counters, w.quants, _plane(w.high_bits, w), w.scales,
        _plane(w.sub_scales, w), batch, w.n_rows, w.n_chunks, chunks_per_split, split_k,
        QTYPE=int(w.qtype), BLOCK_M=triton.next_power_of_2(batch), BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c,
        SPLIT=split_k > 1, EMULATE=interpreted(), num_warps=cfg.num_warps, enable_fp_fusion=True,
        **early_launch_args(x.device),
    )  # fmt: skip
    return out.reshape(*x.shape[:-1], w.n_rows)


def quantize_rows(x: torch.Tensor) -> QuantizedRows:
    """x [M, K] (K a multiple of 32), each block of 32 values rounded to int8 with the scale
    d = max |x| / 127, as the GEMV reads them (see `store_rounded_blocks`)."""
    batch, n_cols = x.shape
    rounded = QuantizedRows.empty(batch, n_cols, x.device)
    n_blocks = n_cols // 32
    grid = (batch, triton.cdiv(n_blocks, QUANTIZE_BLOCK_B))
    _quantize_kernel[grid](
        x, rounded.words, rounded.meta, n_blocks, BLOCK_B=QUANTIZE_BLOCK_B, num_warps=4, enable_fp_fusion=True,
        **early_launch_args(x.device),
    )
    return rounded


@functools.cache
def early_launch(device: torch.device) -> bool:
    """Whether kernels may start before the one before them ends (programmatic dependent
    launch: Hopper and later, not in Triton's interpreter; LLAMATP_PDL=0 turns it off)."""
    if interpreted() or device.type != "cuda" or os.environ.get("LLAMATP_PDL", "1") == "0":
        return False
    return torch.cuda.get_device_capability(device)[0] >= 9


def early_launch_args(device: torch.device) -> dict[str, bool]:
    """Launch arguments of a kernel that may start early (see `early_launch`): its EARLY
    constexpr and, when set, the launch option. Such a kernel must wait
    (`tl.extra.cuda.gdc_wait`) before it reads what earlier kernels wrote or writes anything,
    since memory it writes may still be read by them."""
    return {"EARLY": True, "launch_pdl": True} if early_launch(device) else {"EARLY": False}


def interpreted() -> bool:
    """Whether Triton runs kernels in its interpreter, which emulates no PTX."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def dequantize_packed(
    w: PackedWeight, dtype: torch.dtype = torch.bfloat16, tiling: DequantTiling | None = None
) -> torch.Tensor:
    """The whole weight as a dense [n_rows, n_cols] tensor of `dtype` (for prompt-sized matmuls)."""
    tiling = tiling or DEQUANT_TILINGS.get(w.qtype, DEFAULT_DEQUANT_TILING)
    out = torch.empty(w.n_rows, w.n_cols, dtype=dtype, device=w.quants.device)
    n_units = w.n_cols // 32
    _dequant_kernel[(w.quants.shape[0], triton.cdiv(n_units, tiling.block_u))](
        out, w.quants, _plane(w.high_bits, w), w.scales, _plane(w.sub_scales, w), w.n_rows, n_units, MAGIC,
        QTYPE=int(w.qtype), BLOCK_U=tiling.block_u, num_warps=tiling.num_warps, enable_fp_fusion=True,
    )  # fmt: skip
    return out


def gather_rows(w: PackedWeight, ids: torch.Tensor, first: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """[len(ids), n_cols] of `dtype`: row ids[t] - first of W times `scale`, or zeros where W
    lacks that row (a tensor-parallel rank's slice of an embedding)."""
    out = torch.empty(ids.shape[0], w.n_cols, dtype=dtype, device=w.quants.device)
    n_units = w.n_cols // 32
    block_u = 8
    _gather_rows_kernel[(ids.shape[0], triton.cdiv(n_units, block_u))](
        out, ids, w.quants, _plane(w.high_bits, w), w.scales, _plane(w.sub_scales, w), first, w.n_rows, n_units,
        scale, MAGIC, QTYPE=int(w.qtype), BLOCK_U=block_u, num_warps=2, enable_fp_fusion=True,
        **early_launch_args(w.quants.device),
    )  # fmt: skip
    return out


def _plane(plane: torch.Tensor | None, w: PackedWeight) -> torch.Tensor:
    """A plane the type lacks is never read; the kernel still needs a pointer."""
    return w.quants if plane is None else plane
