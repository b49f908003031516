"""Start one worker per device, or join a group that torchrun started.

`llamatp run` keeps rank 0 in the calling process, so it has the terminal (stdin for chat,
stdout for the stream) and spawns ranks 1..; commands that launch several times (bench)
spawn every rank, so each launch starts from fresh processes and the caller only
supervises. Either way, if any worker fails, every process ends within seconds with one
line naming the rank that failed and why; nothing is left waiting on a collective.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llamatp.errors import LlamatpError

# Every process we start, unless the user set these: NVLink multicast off, and no warning (once
# per rank) that layer split's sends and receives are serialized with the other collectives,
# since its ranks run one after another anyway.
WORKER_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
              "TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING": "false"}
POLL_S = 0.1


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


def launch(job: Job, devices: list[str], rank0_here: bool = False) -> Any:
    """Run `job` on every device and return rank 0's result.

    rank0_here: run rank 0 in this process (it keeps the terminal). Otherwise every rank
    is a child process and rank 0's result comes back pickled. Raises LlamatpError naming
    the failed rank if any rank fails.
    """
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    _arm_watchdog()
    if in_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if len(devices) != world:
            raise LlamatpError(f"torchrun started {world} processes for {len(devices)} devices")
        return job(WorkerInfo(rank, world, devices[rank]))
    if len(devices) == 1:
        return job(WorkerInfo(0, 1, devices[0]))
    return _Group(job, devices, rank0_here).run()


class _Group:
    def __init__(self, job: Job, devices: list[str], rank0_here: bool) -> None:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(_free_port())
        ctx = mp.get_context("spawn")
        self.errors, self.results = ctx.Queue(), ctx.Queue()
        self.world, self.rank0_here = len(devices), rank0_here
        first_child = 1 if rank0_here else 0
        self.workers = {
            r: ctx.Process(target=_worker, args=(job, WorkerInfo(r, self.world, devices[r]), self.errors, self.results),
                           daemon=True)
            for r in range(first_child, self.world)
        }
        self.job, self.devices = job, devices

    def run(self) -> Any:
        for w in self.workers.values():
            w.start()
        try:
            if self.rank0_here:
                return self._run_rank0_here()
            return self._wait_for_result()
        finally:
            self._stop()

    def _run_rank0_here(self) -> Any:
        # Rank 0 may block in a collective whose peer died: a watcher ends the process then.
        threading.Thread(target=self._watch, daemon=True).start()
        try:
            result = self.job(WorkerInfo(0, self.world, self.devices[0]))
        except LlamatpError:
            raise
        except Exception as e:
            # A peer's death often surfaces here first (a reset connection): name the peer.
            failure = self._failure(wait_s=2.0)
            if failure:
                raise LlamatpError(failure) from None
            raise LlamatpError(f"rank 0 ({self.devices[0]}) failed: {_one_line(e)}") from None
        _leave_process_group()
        return result

    def _wait_for_result(self) -> Any:
        while True:
            try:
                return pickle.loads(self.results.get(timeout=POLL_S))
            except queue.Empty:
                failure = self._failure(wait_s=0.0)
                if failure:
                    raise LlamatpError(failure) from None

    def _watch(self) -> None:
        while not all(w.exitcode == 0 for w in self.workers.values()):
            failure = self._failure(wait_s=0.0)
            if failure:
                print(f"error: {failure}", file=sys.stderr, flush=True)
                self._stop()
                os._exit(1)
            time.sleep(POLL_S)

    def _failure(self, wait_s: float) -> str | None:
        """One line for the first real failure, or None. A rank killed by a signal is the
        cause, not the peers whose connections to it then broke."""
        deadline = time.monotonic() + wait_s
        while True:
            failed = {r: w.exitcode for r, w in self.workers.items() if w.exitcode not in (None, 0)}
            if failed or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if not failed:
            return None
        time.sleep(0.5)  # let the other ranks' reports arrive
        reports: dict[int, str] = {}
        while True:
            try:
                rank, why = self.errors.get_nowait()
                reports.setdefault(rank, why)
            except queue.Empty:
                break
        failed = {r: w.exitcode for r, w in self.workers.items() if w.exitcode not in (None, 0)}
        killed = [r for r, code in failed.items() if code is not None and code < 0]
        if killed:
            r = killed[0]
            return f"rank {r} ({self.devices[r]}) was killed by {signal.Signals(-failed[r]).name}"
        r = next(iter(reports), next(iter(failed)))
        why = reports.get(r, f"exited with code {failed.get(r)}")
        return f"rank {r} ({self.devices[r]}) failed: {why}"

    def _stop(self) -> None:
        for w in self.workers.values():
            if w.is_alive():
                w.terminate()
        for w in self.workers.values():
            w.join(timeout=3)
            if w.is_alive():
                w.kill()
                w.join(timeout=1)


def _worker(job: Job, info: WorkerInfo, errors: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher handles Ctrl-C and stops us
    _arm_watchdog()
    try:
        result = job(info)
        _leave_process_group()
    except BaseException as e:  # noqa: BLE001 - a worker must report, whatever went wrong
        errors.put((info.rank, str(e) if isinstance(e, LlamatpError) else _one_line(e)))
        sys.exit(1)
    if info.rank == 0:
        # Plain pickle copies tensors by value; torch's default sharing would hand over file
        # descriptors that die with this process.
        results.put(pickle.dumps(result))


def _one_line(e: BaseException) -> str:
    return " ".join(traceback.format_exception_only(type(e), e)[-1].split())


def _arm_watchdog() -> None:
    """LLAMATP_WATCHDOG=SECONDS: if the process still runs then, print every thread's stack
    and exit. For diagnosing a run that hangs (a collective that never completes)."""
    seconds = os.environ.get("LLAMATP_WATCHDOG")
    if seconds:
        import faulthandler

        faulthandler.dump_traceback_later(float(seconds), exit=True)


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
