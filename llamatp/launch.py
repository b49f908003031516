"""Start one worker per device, or join a group that torchrun started.

The calling process is rank 0: it keeps the terminal (stdin for chat, stdout for the
stream). Ranks 1.. are spawned. If any worker fails, every process ends within seconds
with one line naming the rank and the reason; nothing is left waiting on a collective.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llamatp.errors import LlamatpError

# NVLink multicast stays off in every process we start.
SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@dataclass(frozen=True)
class WorkerInfo:
    rank: int
    world: int
    device: str


Job = Callable[[WorkerInfo], Any]


def in_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def torchrun_devices(cuda_available: bool) -> list[str]:
    """One device per process of the whole torchrun group: rank r uses local GPU r % local size."""
    world = int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return [f"cuda:{r % local_world}" if cuda_available else "cpu" for r in range(world)]


def launch(job: Job, devices: list[str]) -> Any:
    """Run `job` on every device; returns rank 0's result. Raises LlamatpError if any rank fails."""
    for key, value in SAFE_ENV.items():
        os.environ.setdefault(key, value)
    _arm_watchdog()
    if in_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if len(devices) != world:
            raise LlamatpError(f"torchrun started {world} processes for {len(devices)} devices")
        return job(WorkerInfo(rank, world, devices[rank]))
    world = len(devices)
    if world == 1:
        return job(WorkerInfo(0, 1, devices[0]))
    try:
        return _spawn_and_run(job, devices)
    finally:
        _leave_process_group()


def _spawn_and_run(job: Job, devices: list[str]) -> Any:
    world = len(devices)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(job, WorkerInfo(r, world, devices[r]), errors), daemon=True)
        for r in range(1, world)
    ]
    for w in workers:
        w.start()
    watcher = threading.Thread(target=_watch, args=(workers, errors), daemon=True)
    watcher.start()
    try:
        return job(WorkerInfo(0, world, devices[0]))
    except KeyboardInterrupt:
        _stop(workers)
        raise
    except BaseException:
        _stop(workers)
        raise
    finally:
        _join_or_stop(workers)


def _worker(job: Job, info: WorkerInfo, errors: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 handles Ctrl-C and stops us
    _arm_watchdog()
    try:
        job(info)
        _leave_process_group()
    except LlamatpError as e:
        errors.put((info.rank, info.device, str(e)))
        sys.exit(1)
    except BaseException as e:  # noqa: BLE001 - a worker must report, whatever went wrong
        detail = traceback.format_exception_only(type(e), e)[-1].strip()
        errors.put((info.rank, info.device, detail))
        sys.exit(1)


def _arm_watchdog() -> None:
    """LLAMATP_WATCHDOG=SECONDS: if the process still runs then, print every thread's stack
    and exit. For diagnosing a run that hangs (a collective that never completes)."""
    seconds = os.environ.get("LLAMATP_WATCHDOG")
    if seconds:
        import faulthandler

        faulthandler.dump_traceback_later(float(seconds), exit=True)


def _leave_process_group() -> None:
    """So that a later launch in this process can form a new group."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _watch(workers: list[Any], errors: Any) -> None:
    """If a worker dies, report it and end the whole run: rank 0 may be blocked in a collective."""
    while True:
        for w in workers:
            w.join(timeout=0.2)
            if w.exitcode not in (None, 0):
                try:
                    rank, device, why = errors.get(timeout=2)
                    message = f"rank {rank} ({device}) failed: {why}"
                except Exception:  # noqa: BLE001 - killed workers report nothing
                    rank = workers.index(w) + 1
                    message = f"rank {rank} exited with code {w.exitcode}"
                print(f"error: {message}", file=sys.stderr, flush=True)
                _stop(workers)
                os._exit(1)
        if all(w.exitcode == 0 for w in workers):
            return


def _stop(workers: list[Any]) -> None:
    for w in workers:
        if w.is_alive():
            w.terminate()
    for w in workers:
        w.join(timeout=3)
        if w.is_alive():
            w.kill()


def _join_or_stop(workers: list[Any], timeout: float = 30.0) -> None:
    for w in workers:
        w.join(timeout=timeout)
    _stop(workers)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
