"""The GEMV and dequantization kernels agree with gguf's reference dequantization.

The GEMV rounds x to 8 bits per block of 32 values before it multiplies (as llama.cpp's
CUDA backend does): it must match the product of that rounded x with the dequantized weight
to float32 precision, and the exact product to within the rounding (about 0.5%).

The kernels run in Triton's interpreter on the CPU. Triton picks the interpreter for a
@triton.jit function when it is defined, its own library's included, so TRITON_INTERPRET=1
must be set before Triton is first imported: this module sets it for its own imports and
tests only. If another module imported Triton first, this module's tests run again in a
fresh Python process instead, and are reported as skipped here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.errors import LlamatpError


@contextlib.contextmanager
def _interpreter() -> Iterator[None]:
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


with _interpreter():
    import triton.language as tl

    from llamatp.dense_gemv import DenseTiling, dense_gemv
    from llamatp.quant.gemv import (
        DequantTiling, GemvConfig, Tiling, dequantize_packed, early_launch, early_launch_args, gather_rows, gemv,
        gemv_supported, pick_config, quantize_rows, repack,
    )  # fmt: skip

INTERPRETED = type(tl.sum).__name__ == "InterpretedFunction"  # False if Triton was imported before


@pytest.fixture(autouse=True, scope="module")
def _run_in_interpreter() -> Iterator[None]:
    if not INTERPRETED:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
            env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"in a fresh process with Triton's interpreter:\n{result.stdout[-4000:]}")
        pytest.skip("Triton was imported before this module; its tests passed in a fresh process")
    with _interpreter():  # launches consult the variable too
        yield


Q = GGMLQuantizationType
TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]

# Byte offsets of the float16 scale fields inside one block (ggml-common.h).
F16_FIELDS = {Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q8_0: (0,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}

N_ROWS = 67  # not a multiple of any row tile
N_COLS = 512  # two K-quant superblocks, sixteen 32-element blocks


def random_blocks(qtype: GGMLQuantizationType, n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    """Valid GGUF data: random bytes everywhere, finite float16 values in the scale fields."""
    rng = np.random.default_rng(seed)
    block, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_rows, n_cols // block, type_size), dtype=np.uint8)
    for offset in F16_FIELDS[qtype]:
        scales = (rng.standard_normal(raw.shape[:2]) * 0.05).astype(np.float16)
        raw[:, :, offset : offset + 2] = scales[..., None].view(np.uint8)
    return raw.reshape(n_rows, -1)


def reference(x: torch.Tensor, raw: np.ndarray, qtype: GGMLQuantizationType) -> torch.Tensor:
    weight = torch.from_numpy(quants.dequantize(raw, qtype)).double()
    return x.double() @ weight.T


def rounded(x: torch.Tensor) -> torch.Tensor:
    """x as the GEMV sees it: each block of 32 values rounded to multiples of max |x| / 127."""
    blocks = x.float().reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, 127 / amax, 0)
    return (torch.round(blocks * inv) * (amax / 127)).reshape(x.shape)


def check_gemv(out: torch.Tensor, x: torch.Tensor, raw: np.ndarray, qtype: GGMLQuantizationType) -> None:
    """The kernel computes the product of the rounded x exactly, and so the product of x closely."""
    precision = 1e-2 if out.dtype == torch.bfloat16 else 1e-5
    assert relative_error(out, reference(rounded(x), raw, qtype)) < precision
    assert relative_error(out, reference(x, raw, qtype)) < 1e-2


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_gemv_matches_dequantized_matmul_in_float32(qtype: GGMLQuantizationType, batch: int) -> None:
    raw = random_blocks(qtype, N_ROWS, N_COLS)
    x = torch.randn(batch, N_COLS, generator=torch.Generator().manual_seed(1))
    out = gemv(x, repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS))
    assert out.shape == (batch, N_ROWS) and out.dtype == torch.float32
    check_gemv(out, x, raw, qtype)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_gemv_keeps_bfloat16_inputs_and_outputs(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=2)
    x = torch.randn(2, N_COLS, generator=torch.Generator().manual_seed(3)).bfloat16()
    out = gemv(x, repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS))
    assert out.dtype == torch.bfloat16
    check_gemv(out, x, raw, qtype)


def test_gemv_writes_float32_when_asked_from_bfloat16_inputs() -> None:
    """As the output head does, for float32 logits without a conversion kernel."""
    raw = random_blocks(Q.Q6_K, N_ROWS, N_COLS, seed=2)
    x = torch.randn(2, N_COLS, generator=torch.Generator().manual_seed(3)).bfloat16()
    w = repack(torch.from_numpy(raw), Q.Q6_K, N_ROWS, N_COLS)
    out = gemv(x, w, out_dtype=torch.float32)
    assert out.dtype == torch.float32
    check_gemv(out, x, raw, Q.Q6_K)  # to float32 precision, not bfloat16's


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q6_K], ids=lambda t: t.name)
def test_split_k_adds_up_uneven_shares_and_resets_for_the_next_call(qtype: GGMLQuantizationType) -> None:
    n_cols = 768  # Q8_0: 48 chunks, 3 shares of 16; Q6_K: 24 chunks, shares of 16 and 8
    raw = random_blocks(qtype, N_ROWS, n_cols, seed=4)
    weight = repack(torch.from_numpy(raw), qtype, N_ROWS, n_cols)
    config = GemvConfig(block_n=32, block_c=16, split_k=3, num_warps=1)
    for seed in (5, 6):
        x = torch.randn(2, n_cols, generator=torch.Generator().manual_seed(seed))
        check_gemv(gemv(x, weight, config), x, raw, qtype)
    assert not weight.split_counters.any()


def test_pick_config_splits_k_until_each_multiprocessor_has_the_tilings_programs() -> None:
    weight = repack(torch.from_numpy(random_blocks(Q.Q4_0, 64, 4096)), Q.Q4_0, 64, 4096)  # 128 chunks a row
    tiling = Tiling(block_n=32, block_c=16, num_warps=4, programs_per_sm=4)
    assert pick_config(weight, 1, sm_count=2, tiling=tiling).split_k == 4  # 2 row tiles x 4 = 8 programs
    assert pick_config(weight, 1, sm_count=1, tiling=tiling).split_k == 2
    assert pick_config(weight, 1, sm_count=64, tiling=tiling).split_k == 8  # K holds 8 shares of 16 chunks
    assert pick_config(weight, 8, sm_count=1, tiling=tiling).block_c == 4  # a batch of 8 holds fewer chunks


@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q4_K], ids=lambda t: t.name)
def test_gemv_handles_the_largest_decode_batch(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=11)
    x = torch.randn(8, N_COLS, generator=torch.Generator().manual_seed(12))
    out = gemv(x, repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS))
    check_gemv(out, x, raw, qtype)


def test_gemv_accepts_leading_dimensions() -> None:
    raw = random_blocks(Q.Q8_0, N_ROWS, N_COLS, seed=6)
    x = torch.randn(2, 1, N_COLS, generator=torch.Generator().manual_seed(7))
    out = gemv(x, repack(torch.from_numpy(raw), Q.Q8_0, N_ROWS, N_COLS))
    assert out.shape == (2, 1, N_ROWS)
    check_gemv(out.reshape(2, N_ROWS), x.reshape(2, N_COLS), raw, Q.Q8_0)


def test_gemv_takes_x_already_rounded_and_checks_its_shape() -> None:
    raw = random_blocks(Q.Q4_K, N_ROWS, N_COLS, seed=16)
    weight = repack(torch.from_numpy(raw), Q.Q4_K, N_ROWS, N_COLS)
    x = torch.randn(2, N_COLS, generator=torch.Generator().manual_seed(17))
    assert torch.equal(gemv(x, weight, rounded=quantize_rows(x)), gemv(x, weight))
    with pytest.raises(LlamatpError, match="rounded x holds"):
        gemv(x, weight, rounded=quantize_rows(x[:1]))


def test_quantize_rows_stores_8_bit_codes_in_the_order_of_the_weights_fields() -> None:
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(14))
    x[1, 32:] = 0  # an all-zero block has scale 0
    quantized = quantize_rows(x)
    words, meta = quantized.words, quantized.meta
    assert words.shape == (2, 2, 8) and meta.shape == (2, 2, 4)
    codes = words.contiguous().view(torch.int8).reshape(2, 2, 2, 4, 4)  # [row, block, p, w, byte k]
    codes = codes.permute(0, 1, 4, 2, 3).reshape(2, 64).float()  # element 8k + 4p + w
    scale = meta[..., 0].repeat_interleave(32, dim=1)
    torch.testing.assert_close(codes * scale, rounded(x), rtol=0, atol=1e-6)
    assert codes.abs().max() == 127
    halves = (codes * scale).reshape(2, 2, 2, 16).sum(-1)
    torch.testing.assert_close(meta[..., 1:3], halves, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(meta[..., 3], halves.sum(-1), rtol=1e-6, atol=1e-6)
    assert meta[1, 1].tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_dequantize_packed_reproduces_gguf_values(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=8)
    dense = dequantize_packed(repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS), torch.float32)
    expected = torch.from_numpy(quants.dequantize(raw, qtype))
    torch.testing.assert_close(dense, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_gather_rows_returns_scaled_rows_and_zeros_for_rows_the_slice_lacks(qtype: GGMLQuantizationType) -> None:
    """As a tensor-parallel rank looks up tokens in its slice [first, first + N_ROWS) of an embedding."""
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=17)
    first = 100
    ids = torch.tensor([first + 3, first - 1, first + N_ROWS - 1, first + N_ROWS, first])
    out = gather_rows(repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS), ids, first, 2.5, torch.float32)
    dense = torch.from_numpy(quants.dequantize(raw, qtype))
    expected = torch.stack([dense[3], torch.zeros(N_COLS), dense[N_ROWS - 1], torch.zeros(N_COLS), dense[0]]) * 2.5
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q8_0, Q.Q6_K], ids=lambda t: t.name)
def test_dequantize_packed_masks_a_programs_columns_past_the_end(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=16)
    wide_programs = DequantTiling(block_u=2 * N_COLS // 32, num_warps=1)
    dense = dequantize_packed(repack(torch.from_numpy(raw), qtype, N_ROWS, N_COLS), torch.float32, wide_programs)
    torch.testing.assert_close(dense, torch.from_numpy(quants.dequantize(raw, qtype)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q5_K], ids=lambda t: t.name)
def test_repack_takes_a_block_aligned_column_slice(qtype: GGMLQuantizationType) -> None:
    """An input-split rank passes the byte range of its columns in every row."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    raw = random_blocks(qtype, N_ROWS, N_COLS, seed=9)
    first_col = 256
    byte_start = first_col // block * type_size
    piece = torch.from_numpy(raw)[:, byte_start:]  # a strided view, as slicing a mapped file gives
    x = torch.randn(1, N_COLS - first_col, generator=torch.Generator().manual_seed(10))
    out = gemv(x, repack(piece, qtype, N_ROWS, N_COLS - first_col))
    check_gemv(out, x, np.ascontiguousarray(raw[:, byte_start:]), qtype)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_repacked_planes_cost_at_most_3_percent_more_bytes_than_gguf(qtype: GGMLQuantizationType) -> None:
    raw = random_blocks(qtype, 64, N_COLS, seed=13)
    assert raw.nbytes <= repack(torch.from_numpy(raw), qtype, 64, N_COLS).nbytes <= raw.nbytes * 1.03


def test_rows_are_padded_to_whole_tiles_of_32() -> None:
    raw = random_blocks(Q.Q4_1, N_ROWS, N_COLS, seed=15)
    padded = repack(torch.from_numpy(raw), Q.Q4_1, N_ROWS, N_COLS)
    assert padded.nbytes == repack(torch.from_numpy(raw[:1].repeat(96, axis=0)), Q.Q4_1, 96, N_COLS).nbytes


@pytest.mark.parametrize("tiling", [DenseTiling(16, 64, 1), DenseTiling(32, 128, 2)], ids=str)
def test_dense_gemv_matches_a_matmul_for_uneven_rows_and_columns(tiling: DenseTiling) -> None:
    """Rows not a multiple of a program's, columns not a multiple of a step's."""
    g = torch.Generator().manual_seed(17)
    w, x = torch.randn(67, 200, generator=g), torch.randn(1, 200, generator=g)
    torch.testing.assert_close(dense_gemv(x, w, tiling), x @ w.T, rtol=1e-5, atol=1e-5)


def test_dense_gemv_of_an_empty_slice_is_empty() -> None:
    assert dense_gemv(torch.randn(1, 64), torch.empty(0, 64)).shape == (1, 0)


def test_dense_gemv_keeps_bfloat16() -> None:
    g = torch.Generator().manual_seed(18)
    w, x = torch.randn(40, 96, generator=g).bfloat16(), torch.randn(1, 96, generator=g).bfloat16()
    out = dense_gemv(x, w, DenseTiling(16, 64, 1))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x.float() @ w.float().T, rtol=1e-2, atol=1e-2)


def test_kernels_start_early_only_on_gpus() -> None:
    """Programmatic dependent launch needs a Hopper GPU; elsewhere kernels launch as usual."""
    assert not early_launch(torch.device("cpu")) and early_launch_args(torch.device("cpu")) == {"EARLY": False}


def test_supported_types_are_those_real_models_use() -> None:
    assert all(gemv_supported(t) for t in TYPES)
    assert not any(gemv_supported(t) for t in (Q.F16, Q.BF16, Q.F32, Q.Q5_1, Q.Q2_K, Q.Q3_K))


def test_repack_rejects_unsupported_types_and_wrong_shapes() -> None:
    with pytest.raises(LlamatpError, match="Q2_K"):
        repack(torch.zeros(4, 84, dtype=torch.uint8), Q.Q2_K, 4, 256)
    with pytest.raises(LlamatpError, match="expected"):
        repack(torch.zeros(4, 100, dtype=torch.uint8), Q.Q8_0, 4, 64)
    with pytest.raises(LlamatpError, match="256-element"):
        repack(torch.zeros(4, 144, dtype=torch.uint8), Q.Q4_K, 4, 288)
