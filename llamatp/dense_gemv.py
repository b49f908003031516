"""One row of x times a dense bf16 or f16 weight (decode of F16 and BF16 models), in Triton.

At batch 1 cuBLAS reads such a weight at about 91% of an H100's copy bandwidth, splits K
for short outputs (a second kernel then adds the shares), and cannot start before the
kernel before it ends. Here each program takes a few whole rows and walks K, loading the
next tile before it works on the current one; like the other decode kernels it launches
early (`early_launch_args`) and loads its first weights while the kernel before it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from llamatp.quant.gemv import early_launch_args, wait_for_inputs


@dataclass(frozen=True)
class DenseTiling:
    """Rows per program, columns per step, and warps."""

    block_n: int
    block_k: int
    num_warps: int


# As printed by `scripts/bench_gemv.py --sweep --dense-only` on an H100.
DENSE_TILING = DenseTiling(block_n=8, block_k=512, num_warps=4)


@triton.jit
def _dense_gemv_kernel(x_ptr, w_ptr, out_ptr, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       EARLY: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    cols = tl.arange(0, BLOCK_K)
    w_rows = w_ptr + rows.to(tl.int64)[:, None] * K
    # The weights are read once: they need not stay in the cache.
    w_next = tl.load(w_rows + cols[None, :], mask=row_ok[:, None] & (cols < K)[None, :], other=0.0,
                     eviction_policy="evict_first")
    wait_for_inputs(EARLY)
    acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        w = w_next
        ahead = k0 + BLOCK_K + cols  # past the end, the mask keeps the load off memory
        w_next = tl.load(w_rows + ahead[None, :], mask=row_ok[:, None] & (ahead < K)[None, :], other=0.0,
                         eviction_policy="evict_first")
        # x in the weights' layout, a copy per row that the cache serves, rather than loaded
        # once and moved to that layout through shared memory at every step.
        x = tl.load(x_ptr + k0 + cols[None, :] + 0 * rows[:, None], mask=(k0 + cols < K)[None, :], other=0.0)
        acc += w.to(tl.float32) * x.to(tl.float32)
    tl.store(out_ptr + rows, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=row_ok)


def dense_gemv(x: torch.Tensor, w: torch.Tensor, tiling: DenseTiling = DENSE_TILING) -> torch.Tensor:
    """x [1, K] @ w.T for a contiguous weight w [N, K]: [1, N] in x's dtype, summed in float32."""
    n_rows, n_cols = w.shape
    x = x.reshape(1, n_cols).contiguous()
    out = torch.empty(1, n_rows, dtype=x.dtype, device=x.device)
    if n_rows == 0:  # a rank's empty slice
        return out
    _dense_gemv_kernel[(triton.cdiv(n_rows, tiling.block_n),)](
        x, w, out, n_rows, n_cols, BLOCK_N=tiling.block_n, BLOCK_K=tiling.block_k, num_warps=tiling.num_warps,
        **early_launch_args(x.device),
    )
    return out
