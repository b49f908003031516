"""A linear layer over one rank's slice of a GGUF weight.

On CUDA, quantized types with a decode kernel stay in GGUF blocks (repacked once): small
batches run the GEMV kernel that reads the blocks, prompt batches dequantize to bf16 and
use a tensor-core matmul. Everything else is dequantized once at load and runs dense, one
row of x (decode) through `dense_gemv`, more through cuBLAS.

The GEMV reads x rounded to 8 bits (`QuantizedRows`). A layer's `rounded_input` gives a
buffer for that, which the kernel producing x can fill (see `llamatp.kernels`); passed on
to `forward` with x, it spares the GEMV its own rounding pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType

from llamatp.kernels import use_triton
from llamatp.quant.dequant import dequantize_to

if TYPE_CHECKING:
    from llamatp.quant.gemv import PackedWeight, QuantizedRows

# Decode (and small batches) take the GEMV path up to this many rows.
GEMV_MAX_ROWS = 8


@dataclass
class WeightSlice:
    """A rank's piece of a GGUF tensor: raw GGML bytes [rows, row_bytes] and their type."""

    raw: torch.Tensor
    qtype: GGMLQuantizationType
    rows: int
    cols: int

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize_to(self.raw, self.qtype, dtype).reshape(self.rows, self.cols)

    def packed(self) -> PackedWeight | None:
        """The weight repacked for the GEMV kernels, where they read its type on its device
        (and it has rows); else None."""
        if self.rows == 0 or not use_triton(self.raw):
            return None
        from llamatp.quant.gemv import gemv_supported, repack

        return repack(self.raw, self.qtype, self.rows, self.cols) if gemv_supported(self.qtype) else None


class Linear(torch.nn.Module):
    def __init__(self, weight: WeightSlice, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.rows, weight.cols
        self.bias = bias
        self.packed = weight.packed()
        self.weight: torch.Tensor | None = None  # [out, in], on GPUs
        self.weight_t: torch.Tensor | None = None  # [in, out], on the CPU
        if self.packed is None and weight.raw.is_cuda:
            self.weight = weight.dense(dtype)
        elif self.packed is None:
            # The CPU's BLAS streams a one-row product at ~11 GB/s from [out, in] weights and
            # at ~18-24 GB/s from [in, out] (measured on a 2-core machine): decode is bound by it.
            self.weight_t = weight.dense(dtype).t().contiguous()

    def forward(self, x: torch.Tensor, rounded: QuantizedRows | None = None,
                out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """x @ W.T (+ bias); the GEMV kernel writes it in `out_dtype` if given, other paths in x's dtype."""
        if self.weight_t is not None:
            y = x @ self.weight_t
            return y if self.bias is None else y + self.bias
        if self.packed is None:
            if x.shape[0] > 1 or not use_triton(x):
                return F.linear(x, self.weight, self.bias)
            from llamatp.dense_gemv import dense_gemv

            y = dense_gemv(x, self.weight)
            return y if self.bias is None else y + self.bias
        from llamatp.quant.gemv import dequantize_packed, gemv

        if x.shape[0] <= GEMV_MAX_ROWS:
            y = gemv(x, self.packed, rounded=rounded, out_dtype=out_dtype)
        else:
            y = x @ dequantize_packed(self.packed, x.dtype).t()
        return y if self.bias is None else y + self.bias


class StackedLinear(torch.nn.Module):
    """Several projections of one input (q|k|v, gate|up) whose outputs sit side by side.

    Weights of one GGUF type are stacked into a single Linear, so one kernel reads them all.
    """

    def __init__(self, parts: list[Linear]) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def _gemv_parts(self, x_rows: int) -> list[Linear]:
        """The parts a forward pass over `x_rows` rows runs as GEMVs."""
        return [part for part in self.parts if part.packed is not None] if x_rows <= GEMV_MAX_ROWS else []

    def rounded_input(self, x_rows: int, device: torch.device) -> QuantizedRows | None:
        """A buffer for x rounded as the GEMV reads it, if a forward pass over `x_rows` rows
        would run a GEMV; else None."""
        gemv_parts = self._gemv_parts(x_rows)
        if not gemv_parts:
            return None
        from llamatp.quant.gemv import QuantizedRows

        return QuantizedRows.empty(x_rows, gemv_parts[0].in_features, device)

    def forward(self, x: torch.Tensor, rounded: QuantizedRows | None = None,
                out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """x [rows, in]; `rounded`, if given, holds x already rounded (`rounded_input`). Parts of
        different GGUF types share one rounding of x. `out_dtype`: as `Linear.forward`."""
        if len(self.parts) == 1:
            return self.parts[0](x, rounded, out_dtype)
        if rounded is None and len(self._gemv_parts(x.shape[0])) > 1:
            from llamatp.quant.gemv import quantize_rows

            rounded = quantize_rows(x.reshape(-1, x.shape[-1]).contiguous())
        return torch.cat([part(x, rounded, out_dtype) for part in self.parts], dim=-1)
