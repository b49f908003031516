"""Facts about GGML tensor types: which ones llamatp reads, and where columns sit in a row's bytes.

A quantized row is a run of fixed-size blocks, each encoding `block_size` consecutive
elements in `type_size` bytes. Columns that start and stop on block boundaries therefore
map to a contiguous byte range of every row: a tensor-parallel rank can take its share of a
quantized matrix without dequantizing the rest.
"""

from __future__ import annotations

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from llamatp.errors import LlamatpError

SUPPORTED_TYPES: tuple[GGMLQuantizationType, ...] = tuple(
    GGMLQuantizationType[name]
    for name in ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
)


def check_supported(qtype: GGMLQuantizationType, tensor_name: str) -> None:
    if qtype not in SUPPORTED_TYPES:
        supported = ", ".join(t.name for t in SUPPORTED_TYPES)
        raise LlamatpError(
            f"tensor '{tensor_name}' has type {qtype.name}, which llamatp does not support (supported: {supported})"
        )


def block_size(qtype: GGMLQuantizationType) -> int:
    """Elements per block (1 for the float types)."""
    return GGML_QUANT_SIZES[qtype][0]


def row_bytes(qtype: GGMLQuantizationType, n_cols: int) -> int:
    """Bytes taken by one row of `n_cols` elements."""
    elements, nbytes = GGML_QUANT_SIZES[qtype]
    if n_cols % elements != 0:
        raise LlamatpError(f"a row of {n_cols} elements is not a whole number of {qtype.name} blocks of {elements}")
    return n_cols // elements * nbytes


def column_byte_range(qtype: GGMLQuantizationType, start_col: int, stop_col: int) -> tuple[int, int]:
    """Byte range [start, stop) within a row that holds columns [start_col, stop_col)."""
    elements, nbytes = GGML_QUANT_SIZES[qtype]
    if not 0 <= start_col <= stop_col:
        raise LlamatpError(f"column range [{start_col}, {stop_col}) is not a valid range")
    if start_col % elements != 0 or stop_col % elements != 0:
        raise LlamatpError(
            f"column range [{start_col}, {stop_col}) does not lie on {qtype.name} block boundaries "
            f"(blocks of {elements} columns)"
        )
    return start_col // elements * nbytes, stop_col // elements * nbytes
