"""Dequantization matches gguf's reference implementation bit for bit; block slicing is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.errors import LlamatpError
from llamatp.quant.blocks import SUPPORTED_TYPES, check_supported, column_byte_range, row_bytes
from llamatp.quant.dequant import dequantize, dequantize_to

Q = GGMLQuantizationType

# Byte offsets of the float16 scale fields inside one block (ggml-common.h).
F16_FIELDS: dict[GGMLQuantizationType, tuple[int, ...]] = {
    Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q5_1: (0, 2), Q.Q8_0: (0,),
    Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,),
}  # fmt: skip

# Float types: (bits per value, exponent mask). Values with an all-ones exponent are NaN/Inf.
FLOAT_BITS: dict[GGMLQuantizationType, tuple[type[np.unsignedinteger], int]] = {
    Q.F32: (np.uint32, 0x7F800000), Q.F16: (np.uint16, 0x7C00), Q.BF16: (np.uint16, 0x7F80),
}  # fmt: skip

LEADING_SHAPE = (2, 3)
BLOCKS_PER_ROW = 4


def finite_float_bits(rng: np.random.Generator, n: int, dtype: type[np.unsignedinteger], exp_mask: int) -> np.ndarray:
    """Random bit patterns of every sign, magnitude and subnormal, none of them NaN or Inf."""
    bits = rng.integers(0, np.iinfo(dtype).max, size=n, dtype=dtype, endpoint=True)
    all_ones = (bits & exp_mask) == exp_mask
    bits[all_ones] ^= dtype(exp_mask & ~(exp_mask >> 1))  # clear the exponent's top bit
    return bits


def random_rows(qtype: GGMLQuantizationType, seed: int = 0) -> np.ndarray:
    """uint8 rows [*LEADING_SHAPE, row_bytes] of random blocks with finite scales."""
    rng = np.random.default_rng(seed)
    block, nbytes = GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(LEADING_SHAPE)) * BLOCKS_PER_ROW
    if qtype in FLOAT_BITS:
        dtype, exp_mask = FLOAT_BITS[qtype]
        blocks = finite_float_bits(rng, n_blocks, dtype, exp_mask).view(np.uint8).reshape(n_blocks, nbytes)
    else:
        blocks = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
        for offset in F16_FIELDS[qtype]:
            scales = finite_float_bits(rng, n_blocks, np.uint16, 0x7C00)
            blocks[:, offset : offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(*LEADING_SHAPE, BLOCKS_PER_ROW * nbytes)


def test_every_supported_type_has_a_test_layout() -> None:
    assert set(SUPPORTED_TYPES) == set(F16_FIELDS) | set(FLOAT_BITS)


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_dequantize_is_bit_exact_with_gguf(qtype: GGMLQuantizationType) -> None:
    raw = random_rows(qtype)
    expected = torch.from_numpy(np.ascontiguousarray(quants.dequantize(raw, qtype), dtype=np.float32))
    ours = dequantize(torch.from_numpy(raw), qtype)
    assert ours.dtype == torch.float32
    assert ours.shape == (*LEADING_SHAPE, BLOCKS_PER_ROW * GGML_QUANT_SIZES[qtype][0])
    assert torch.isfinite(expected).all()
    assert torch.equal(ours.view(torch.int32), expected.view(torch.int32))


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_block_aligned_column_slice_dequantizes_to_the_same_columns(qtype: GGMLQuantizationType) -> None:
    raw = torch.from_numpy(random_rows(qtype, seed=1))
    block = GGML_QUANT_SIZES[qtype][0]
    full = dequantize(raw, qtype)
    start_col, stop_col = block, 3 * block
    start, stop = column_byte_range(qtype, start_col, stop_col)
    part = dequantize(raw[..., start:stop], qtype, n_cols=stop_col - start_col)
    assert torch.equal(part, full[..., start_col:stop_col])


@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q8_0, Q.BF16], ids=lambda t: t.name)
def test_dequantize_to_converts_in_chunks_like_a_single_conversion(qtype: GGMLQuantizationType) -> None:
    raw = torch.from_numpy(random_rows(qtype, seed=2))
    n_cols = BLOCKS_PER_ROW * GGML_QUANT_SIZES[qtype][0]
    out = dequantize_to(raw, qtype, torch.bfloat16, chunk_elements=n_cols)  # one row per chunk
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, dequantize(raw, qtype).to(torch.bfloat16))


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_row_bytes_agrees_with_gguf(qtype: GGMLQuantizationType) -> None:
    n_cols = 3 * GGML_QUANT_SIZES[qtype][0]
    assert row_bytes(qtype, n_cols) == quants.quant_shape_to_byte_shape((n_cols,), qtype)[0]


def test_row_bytes_rejects_a_partial_block() -> None:
    with pytest.raises(LlamatpError, match="Q4_K"):
        row_bytes(Q.Q4_K, 300)


def test_column_byte_range_of_float_rows_is_any_column() -> None:
    assert column_byte_range(Q.F32, 3, 7) == (3 * 4, 7 * 4)


@pytest.mark.parametrize(
    ("qtype", "start_col", "stop_col"),
    [(Q.Q4_K, 0, 128), (Q.Q4_K, 128, 512), (Q.Q8_0, 16, 64), (Q.Q6_K, 256, 300)],
)
def test_column_range_off_block_boundaries_is_rejected(
    qtype: GGMLQuantizationType, start_col: int, stop_col: int
) -> None:
    with pytest.raises(LlamatpError, match="block boundaries"):
        column_byte_range(qtype, start_col, stop_col)


@pytest.mark.parametrize("qtype", [Q.IQ2_XS, Q.TQ1_0], ids=lambda t: t.name)
def test_unsupported_type_error_names_tensor_and_type(qtype: GGMLQuantizationType) -> None:
    with pytest.raises(LlamatpError) as err:
        check_supported(qtype, "blk.0.attn_q.weight")
    message = str(err.value)
    assert "'blk.0.attn_q.weight'" in message and qtype.name in message and "Q4_K" in message
    with pytest.raises(LlamatpError, match=qtype.name):
        dequantize(torch.zeros(1, GGML_QUANT_SIZES[qtype][1], dtype=torch.uint8), qtype)


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_supported_types_pass_the_check(qtype: GGMLQuantizationType) -> None:
    check_supported(qtype, "token_embd.weight")


def test_dequantize_rejects_rows_that_do_not_match_n_cols() -> None:
    raw = torch.from_numpy(random_rows(Q.Q8_0))
    with pytest.raises(LlamatpError, match="not 64"):
        dequantize(raw, Q.Q8_0, n_cols=64)
    with pytest.raises(LlamatpError, match="whole Q8_0 blocks"):
        dequantize(raw[..., :-1], Q.Q8_0)


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_zero_rows_dequantize_to_an_empty_tensor(qtype: GGMLQuantizationType) -> None:
    block, nbytes = GGML_QUANT_SIZES[qtype]
    assert dequantize(torch.zeros(0, 2 * nbytes, dtype=torch.uint8), qtype).shape == (0, 2 * block)
