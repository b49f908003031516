"""Every collective in one place, so the backend (NCCL, gloo) is chosen in one place."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


class Comm:
    """The process group of one run. With one rank every operation is the identity."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    @property
    def is_last(self) -> bool:
        return self.rank == self.world - 1

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(x)
        return x

    def gather_columns(self, local: torch.Tensor, widths: list[int]) -> torch.Tensor:
        """Concatenate each rank's columns (uneven widths allowed); every rank gets the whole."""
        if self.world == 1:
            return local
        width = max(widths)
        padded = torch.zeros(local.shape[0], width, dtype=local.dtype, device=local.device)
        padded[:, : local.shape[1]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:, :w] for p, w in zip(parts, widths)], dim=1)

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


def init_process_group(rank: int, world: int, device: torch.device) -> Comm:
    """Join the group described by MASTER_ADDR/MASTER_PORT (set by the launcher or torchrun)."""
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=int(os.environ.get("LLAMATP_COLLECTIVE_TIMEOUT", "600")))
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kwargs)
    return Comm(rank, world, device)
