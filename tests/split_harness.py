"""Logits of a model run on one CPU or split over CPU worker processes (gloo), for tests.

`launch` runs rank 0 in the calling process, so the job's return value on rank 0 comes back
directly; the other ranks compute the same thing and return nothing to anyone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.distributed as dist

from llamatp.launch import WorkerInfo, launch
from llamatp.runtime import ModelOptions, open_runtime


def logits_job(runs: tuple[ModelOptions, ...], ids: tuple[int, ...], info: WorkerInfo) -> list[torch.Tensor]:
    """All-position logits of `ids` for each of `runs`, one after another in one process group."""
    threads = torch.get_num_threads()  # open_runtime shares the cores out between workers
    try:
        results = []
        for options in runs:
            runtime = open_runtime(options, info)
            results.append(runtime.engine.forward(list(ids), 0, all_logits=True))
            del runtime
        return results
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)


def split_logits(runs: Sequence[ModelOptions], ids: Sequence[int]) -> list[torch.Tensor]:
    """Logits for each of `runs`, which must all name the same number of devices."""
    devices = runs[0].devices
    assert all(len(options.devices) == len(devices) for options in runs)
    return launch(functools.partial(logits_job, tuple(runs), tuple(ids)), list(devices))


def options(model: str, n_devices: int, mode: str, tensor_split: tuple[float, ...] = (), n_ctx: int = 256,
            n_ubatch: int = 512) -> ModelOptions:
    """What `-m model -dev cpu,cpu,... -sm mode -ts ... -c n_ctx -ub n_ubatch` asks for."""
    return ModelOptions(model=model, devices=("cpu",) * n_devices, split_mode=mode, n_ctx=n_ctx,
                        n_ubatch=n_ubatch, tensor_split=tensor_split)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||"""
    return float((a.double() - b.double()).norm() / b.double().norm())
