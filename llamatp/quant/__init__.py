"""GGML tensor types: support checks, block-aligned slicing and dequantization to torch."""

from llamatp.quant.blocks import SUPPORTED_TYPES, block_size, check_supported, column_byte_range, row_bytes
from llamatp.quant.dequant import dequantize, dequantize_to

__all__ = [
    "SUPPORTED_TYPES",
    "block_size",
    "check_supported",
    "column_byte_range",
    "dequantize",
    "dequantize_to",
    "row_bytes",
]
