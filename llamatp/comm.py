"""Every collective in one place, so the backend (NCCL, gloo, symmetric memory) is chosen in one place.

Small all-reduces on GPUs (decode: one token's hidden state) go through PyTorch symmetric
memory's one-shot kernel where it works: each GPU reads its peers' buffers over NVLink and
sums locally, several times faster than NCCL at these sizes. Where the sum is added to the
residual stream and normalized (`reduce_add_rms_norm`), a decode step does all three in one
kernel of its own (`fused_reduce`). NVLink multicast is never used. LLAMATP_ALLREDUCE=nccl
turns symmetric memory off; LLAMATP_FUSED_REDUCE=0 keeps the one-shot kernel but not the fusion.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from llamatp.kernels import add_rms_norm

if TYPE_CHECKING:
    from llamatp.fused_reduce import ReduceAddNorm
    from llamatp.quant.gemv import QuantizedRows


class Comm:
    """The process group of one run. With one rank every operation is the identity."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device
        self._symm: torch.Tensor | None = None
        self._fused: ReduceAddNorm | None = None
        self._group_name = ""

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.world - 1

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks; may return a new tensor rather than write into x."""
        if self.world == 1:
            return x
        symm = self._symm
        if symm is not None and x.numel() <= symm.numel() and x.dtype == symm.dtype:
            out = torch.empty_like(x)
            torch.ops.symm_mem.one_shot_all_reduce_copy_out(
                symm[: x.numel()].view_as(x), x.contiguous(), "sum", self._group_name, out)
            return out
        dist.all_reduce(x)
        return x

    def reduce_add_rms_norm(self, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                            rounded: QuantizedRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(sum of x over ranks + residual) * weight, sum + residual), as `kernels.add_rms_norm`;
        without a residual, of the sum alone."""
        if self._fused is not None and self._fused.applies(x, residual):
            return self._fused(x, residual, weight, eps, rounded)
        return add_rms_norm(self.all_reduce(x), residual, weight, eps, rounded)

    def enable_symmetric_memory(self, width: int, max_rows: int, dtype: torch.dtype) -> str:
        """Route all-reduces of up to max_rows rows of `width` through symmetric memory, and
        fuse a one-row all-reduce with the norm after it.

        Returns the backend small all-reduces will use: 'symmetric memory' (with ' + fused
        norm' where the fusion works), 'nccl' or 'gloo'.
        """
        if self.device.type != "cuda":
            return "gloo"
        if self.world == 1 or os.environ.get("LLAMATP_ALLREDUCE") == "nccl":
            return "nccl"
        self._group_name = dist.group.WORLD.group_name

        def one_shot() -> bool:
            import torch.distributed._symmetric_memory as symm_mem

            self._symm = symm_mem.empty(width * max_rows, dtype=dtype, device=self.device)
            symm_mem.rendezvous(self._symm, self._group_name)
            return float(self.all_reduce(torch.ones(8, dtype=dtype, device=self.device))[0]) == self.world

        if not self._everywhere(one_shot, "_symm"):
            return "nccl"
        if os.environ.get("LLAMATP_FUSED_REDUCE") == "0":
            return "symmetric memory"
        made = self._everywhere(lambda: self._make_fused(width, dtype), "_fused")
        if not (made and self._everywhere(self._fused_works, "_fused")):
            return "symmetric memory"
        return "symmetric memory + fused norm"

    def _everywhere(self, works: Callable[[], bool], attribute: str) -> bool:
        """Whether `works()` held on every rank; where not, `attribute` goes back to None on all."""
        try:
            ok = works()
        except Exception:  # noqa: BLE001 - any failure here means: not this way
            ok = False
        everywhere = torch.tensor([1 if ok else 0], device=self.device)
        dist.all_reduce(everywhere, op=dist.ReduceOp.MIN)  # every rank must choose the same
        if not int(everywhere):
            setattr(self, attribute, None)
            return False
        return True

    def _make_fused(self, width: int, dtype: torch.dtype) -> bool:
        """Every rank votes on this before any runs the kernel: its barrier waits for all."""
        from llamatp.fused_reduce import ReduceAddNorm

        self._fused = ReduceAddNorm(width, dtype, self.device, self._group_name, self.world)
        return True

    def _fused_works(self) -> bool:
        fused = self._fused
        assert fused is not None
        x = torch.full((1, fused.width), self.rank + 1, dtype=fused.dtype, device=self.device)
        _, total = fused(x, torch.ones_like(x), torch.ones(fused.width, device=self.device), 1e-6)
        return bool((total == self.world * (self.world + 1) // 2 + 1).all())

    def gather_columns(self, local: torch.Tensor, widths: list[int]) -> torch.Tensor:
        """Concatenate each rank's columns (uneven widths allowed); every rank gets the whole.
        One collective gathers the slices, padded to the widest: with equal widths the result
        is a view of what it wrote (for one row), with uneven ones the padding is cut away."""
        if self.world == 1:
            return local
        rows, width = local.shape[0], max(widths)
        if local.shape[1] < width:
            local = torch.cat([local, local.new_zeros(rows, width - local.shape[1])], dim=1)
        parts = torch.empty(self.world * rows, width, dtype=local.dtype, device=local.device)
        _all_gather_single(parts, local.contiguous())
        parts = parts.view(self.world, rows, width)
        if len(set(widths)) == 1:
            return parts.transpose(0, 1).reshape(rows, -1)
        return torch.cat([parts[r, :, :w] for r, w in enumerate(widths)], dim=1)

    def send(self, x: torch.Tensor, dst: int) -> dist.Work:
        return dist.isend(x.contiguous(), dst)

    def recv(self, shape: tuple[int, ...], dtype: torch.dtype, src: int) -> torch.Tensor:
        x = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(x, src)
        return x

    def broadcast(self, x: torch.Tensor, src: int) -> torch.Tensor:
        if self.world > 1:
            dist.broadcast(x, src)
        return x

    def broadcast_object(self, obj: object, src: int = 0) -> object:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather_object(self, obj: object) -> list[object]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        gathered: list[object] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def _all_gather_single(output: torch.Tensor, input: torch.Tensor) -> None:
    """The ranks' inputs concatenated along the first dimension (newer torch names the call all_gather_single)."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(output, input)


def init_process_group(rank: int, world: int, device: torch.device) -> Comm:
    """Join the group described by MASTER_ADDR/MASTER_PORT (set by the launcher or torchrun)."""
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=int(os.environ.get("LLAMATP_COLLECTIVE_TIMEOUT", "600")))
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kwargs)
    return Comm(rank, world, device)
