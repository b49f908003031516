"""A linear layer over one rank's slice of a GGUF weight.

On CUDA, quantized types with a decode kernel stay in GGUF blocks (repacked once): small
batches run the GEMV kernel that reads the blocks, prompt batches dequantize to bf16 and
use a tensor-core matmul. Everything else is dequantized once at load and runs dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType

from llamatp.quant.dequant import dequantize_to

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


class Linear(torch.nn.Module):
    def __init__(self, weight: WeightSlice, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.rows, weight.cols
        self.bias = bias
        self.packed = None
        self.weight: torch.Tensor | None = None  # [out, in], on GPUs
        self.weight_t: torch.Tensor | None = None  # [in, out], on the CPU
        if weight.raw.is_cuda and weight.rows > 0 and _gemv_supported(weight.qtype):
            from llamatp.quant.gemv import repack

            self.packed = repack(weight.raw, weight.qtype, weight.rows, weight.cols)
        elif weight.raw.is_cuda:
            self.weight = weight.dense(dtype)
        else:
            # The CPU's BLAS streams a one-row product at ~11 GB/s from [out, in] weights and
            # at ~18-24 GB/s from [in, out] (measured on a 2-core machine): decode is bound by it.
            self.weight_t = weight.dense(dtype).t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_t is not None:
            y = x @ self.weight_t
            return y if self.bias is None else y + self.bias
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        from llamatp.quant.gemv import dequantize_packed, gemv

        if x.shape[0] <= GEMV_MAX_ROWS:
            y = gemv(x, self.packed)
        else:
            y = x @ dequantize_packed(self.packed, x.dtype).t()
        return y if self.bias is None else y + self.bias


def _gemv_supported(qtype: GGMLQuantizationType) -> bool:
    try:
        from llamatp.quant.gemv import gemv_supported
    except ImportError:  # no triton in this environment
        return False
    return gemv_supported(qtype)


class StackedLinear(torch.nn.Module):
    """Several projections of one input (q|k|v, gate|up) whose outputs sit side by side.

    Weights of one GGUF type are stacked into a single Linear, so one kernel reads them all.
    """

    def __init__(self, parts: list[Linear]) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0](x)
        return torch.cat([part(x) for part in self.parts], dim=-1)
