"""Logits of a model run on one CPU or split over CPU worker processes (gloo), for tests.

A split run is started from a process of its own: when a worker fails, `launch` ends the
whole run (rank 0 included) at once, and that must end one test, not the test session.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from llamatp.launch import WorkerInfo, launch
from llamatp.runtime import ModelOptions, open_runtime

SPLIT_RUN_TIMEOUT_S = 300


def logits_job(runs: tuple[ModelOptions, ...], ids: tuple[int, ...], info: WorkerInfo) -> list[torch.Tensor]:
    """All-position logits of `ids` for each of `runs`, one after another in one process group."""
    results = []
    for options in runs:
        runtime = open_runtime(options, info)
        results.append(runtime.engine.forward(list(ids), 0, all_logits=True))
        del runtime  # free this model before the next one loads
    return results


def _launch_and_save(runs: tuple[ModelOptions, ...], ids: tuple[int, ...], out: str) -> None:
    torch.save(launch(functools.partial(logits_job, runs, ids), list(runs[0].devices)), out)


def split_logits(runs: Sequence[ModelOptions], ids: Sequence[int]) -> list[torch.Tensor]:
    """Logits for each of `runs`, which must all name the same devices."""
    devices = runs[0].devices
    assert all(options.devices == devices for options in runs)
    if len(devices) == 1:
        return logits_job(tuple(runs), tuple(ids), WorkerInfo(0, 1, devices[0]))
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "logits.pt"
        rank0 = mp.get_context("spawn").Process(target=_launch_and_save, args=(tuple(runs), tuple(ids), str(out)))
        rank0.start()
        rank0.join(SPLIT_RUN_TIMEOUT_S)
        if rank0.is_alive():
            rank0.kill()
            raise AssertionError(f"the split run did not finish in {SPLIT_RUN_TIMEOUT_S} s")
        assert rank0.exitcode == 0, f"the split run failed with exit code {rank0.exitcode} (its stderr says why)"
        return torch.load(out)


def options(model: str, n_devices: int, mode: str, tensor_split: tuple[float, ...] = ()) -> ModelOptions:
    """What `-m model -dev cpu,cpu,... -sm mode -ts ... -c 256` asks for."""
    return ModelOptions(model=model, devices=("cpu",) * n_devices, split_mode=mode, n_ctx=256,
                        tensor_split=tensor_split)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||"""
    return float((a.double() - b.double()).norm() / b.double().norm())
