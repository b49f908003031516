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
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from llamatp.errors import LlamatpError

# Every process we start, unless the user set these: NVLink multicast off, and no warning (once
# per rank) that layer split's sends and receives are serialized with the other collectives,
# since its ranks run one after another anyway.
WORKER_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
              "TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING": "false"}
POLL_S = 0.1


# llama.cpp's --prio levels as the nice values it sets (`set_process_priority` in its common/).
PRIORITY_NICE = {-1: 5, 0: 0, 1: -5, 2: -10, 3: -20}


def set_process_priority(prio: int) -> None:
    """This process's priority, which the workers it starts inherit. Raising it needs privileges;
    where they are lacking, a warning says so and the run goes on at the priority it had."""
    if prio not in PRIORITY_NICE:
        raise LlamatpError(f"--prio {prio}: use -1 (low), 0 (normal), 1 (medium), 2 (high) or 3 (realtime)")
    if prio == 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY_NICE[prio])
    except PermissionError:
        print(f"warning: --prio {prio}: raising the priority needs privileges; it stays as it was", file=sys.stderr)


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
        self.job, self.devices, self.world, self.rank0_here = job, devices, len(devices), rank0_here
        self.workers: dict[int, BaseProcess] = {}
        # Each worker sends at most one message, how it failed or (rank 0) its result, on a pipe of
        # its own: unlike a queue, a pipe has no lock that a killed worker could leave held, and no
        # named semaphore that an exit through os._exit would leak. One thread reads the pipes: the
        # watcher while rank 0 runs here, else the caller.
        self.pipes: dict[int, Connection] = {}
        self.messages: dict[int, _Failure | bytes | None] = {}
        self.ended = threading.Lock()  # taken once, by the thread that reports how the run ended

    def run(self) -> Any:
        ctx = mp.get_context("spawn")
        try:
            for r in range(1 if self.rank0_here else 0, self.world):
                self.pipes[r], sender = ctx.Pipe(duplex=False)
                info = WorkerInfo(r, self.world, self.devices[r])
                worker = ctx.Process(target=_worker, args=(self.job, info, sender), daemon=True)
                worker.start()
                sender.close()  # the worker has its own copy: once it ends, its pipe reads as ended
                self.workers[r] = worker
            if self.rank0_here:
                return self._run_rank0_here()
            return self._wait_for_result()
        finally:
            if not self._end():
                threading.Event().wait()  # the watcher is reporting a failure and ending the process
            self._stop()

    def _end(self) -> bool:
        """True for the first thread to end the run, the one that says how it ended: a failure seen
        after that is its consequence (ranks stopped, connections broken), not reported again."""
        return self.ended.acquire(blocking=False)

    def _run_rank0_here(self) -> Any:
        # Rank 0 may block in a collective whose peer died: the watcher reports that and ends the process.
        watcher = threading.Thread(target=self._watch, daemon=True)
        watcher.start()
        try:
            result = self.job(WorkerInfo(0, self.world, self.devices[0]))
        except LlamatpError:
            raise
        except Exception as e:
            # A peer's death often surfaces here first (a reset connection): the watcher names the peer.
            watcher.join(timeout=2.0)
            raise LlamatpError(f"rank 0 ({self.devices[0]}) failed: {_one_line(e)}") from None
        _leave_process_group()
        return result

    def _wait_for_result(self) -> Any:
        while True:
            failure = self._failure()
            result = self.messages.get(0)
            if isinstance(result, bytes):
                return pickle.loads(result)
            if failure:
                raise LlamatpError(failure)
            time.sleep(POLL_S)

    def _watch(self) -> None:
        while not self.ended.locked():
            failure = self._failure()
            if failure and self._end():
                print(f"error: {failure}", file=sys.stderr, flush=True)
                self._stop()
                os._exit(1)
            time.sleep(POLL_S)

    def _failure(self) -> str | None:
        """One line for the first failure, or None. A rank killed by a signal is the cause, not
        the peers whose connections to it then broke; else the earliest report is."""
        self._receive()
        if not any(isinstance(m, _Failure) for m in self.messages.values()) and \
                not any(w.exitcode for w in self.workers.values()):
            return None
        time.sleep(0.5)  # a killed rank is reaped an instant after its peers see their connections break
        self._receive()
        codes = {r: w.exitcode for r, w in self.workers.items()}
        for r, code in codes.items():
            if code is not None and code < 0:
                return f"rank {r} ({self.devices[r]}) was killed by {signal.Signals(-code).name}"
        reports = {r: m for r, m in self.messages.items() if isinstance(m, _Failure)}
        if reports:
            r = min(reports, key=lambda r: reports[r].at)
            return f"rank {r} ({self.devices[r]}) failed: {reports[r].why}"
        r = next(r for r, code in codes.items() if code)
        return f"rank {r} ({self.devices[r]}) failed: exited with code {codes[r]}"

    def _receive(self) -> None:
        for r, pipe in self.pipes.items():
            if r not in self.messages and pipe.poll():
                try:
                    self.messages[r] = pipe.recv()
                except EOFError:  # it ended without a word
                    self.messages[r] = None

    def _stop(self) -> None:
        for w in self.workers.values():
            if w.is_alive():
                w.terminate()
        for w in self.workers.values():
            w.join(timeout=3)
            if w.is_alive():
                w.kill()
                w.join(timeout=1)


@dataclass(frozen=True)
class _Failure:
    at: float  # time.monotonic(): one clock for every process of the machine
    why: str


def _worker(job: Job, info: WorkerInfo, pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher handles Ctrl-C and stops us
    _arm_watchdog()
    try:
        result = job(info)
        _leave_process_group()
        if info.rank == 0:
            # Plain pickle copies tensors by value; torch's default sharing would hand over file
            # descriptors that die with this process.
            pipe.send(pickle.dumps(result))
    except BaseException as e:  # noqa: BLE001 - a worker must report, whatever went wrong
        pipe.send(_Failure(time.monotonic(), str(e) if isinstance(e, LlamatpError) else _one_line(e)))
        # Not sys.exit: tearing down a process group whose peers are gone can abort (gloo's
        # "terminate called without an active exception") or hang, after the report was sent.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


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
