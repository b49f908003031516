"""`launch` runs a job in one process per device. However a rank fails (it raises, is killed, exits),
the whole run ends within seconds with exactly one line on stderr, `error: ...` naming the rank
that failed first and why, a non-zero exit, and no process left behind; the failures it causes in
the other ranks (broken connections) are not reported again.

Each run is driven from a fresh Python, as the CLI drives it: with rank 0 in the calling process,
a failure the caller cannot see (rank 0 stuck in a collective) ends that process."""

from __future__ import annotations

import functools
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamatp.errors import LlamatpError
from llamatp.launch import Job, WorkerInfo

TESTS = Path(__file__).resolve().parent
PROMPTLY_S = 30  # the Python starts included; a rank left waiting would take 600 s
# What `llamatp run` does with launch's result and its LlamatpError.
DRIVER = """
import pickle, sys, time
from llamatp.errors import LlamatpError
from llamatp.launch import launch

job, devices, rank0_here = pickle.load(sys.stdin.buffer)
try:
    print(launch(job, devices, rank0_here), flush=True)
except LlamatpError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
time.sleep(1)  # the caller goes on: nothing the run left behind may report or end it now
"""


def run_launch(job: Job, n_ranks: int, rank0_here: bool) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", DRIVER], input=pickle.dumps((job, ["cpu"] * n_ranks, rank0_here)),
                            capture_output=True, timeout=2 * PROMPTLY_S, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert time.monotonic() - started < PROMPTLY_S
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def fail(how: str) -> None:
    if how == "raise":
        raise RuntimeError("out of memory")
    if how == "user error":
        raise LlamatpError("the prompt is too long")
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "exit":
        os._exit(3)


def fail_while_the_others_wait(failing_rank: int, how: str, pids: Path, info: WorkerInfo) -> None:
    """The others wait as in a collective whose peer is gone, which never completes."""
    (pids / str(info.rank)).write_text(str(os.getpid()))
    if info.rank == failing_rank:
        fail(how)
    time.sleep(600)


def return_while_the_others_wait(pids: Path, info: WorkerInfo) -> tuple[int, int]:
    """Rank 0 returns while the others still wait, as in a teardown of their own."""
    (pids / str(info.rank)).write_text(str(os.getpid()))
    if info.rank != 0:
        time.sleep(600)
    return info.rank, info.world


def fail_in_a_gloo_group(failing_rank: int, how: str, info: WorkerInfo) -> None:
    """The others sum tensors with the failing rank until their connections to it break."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=info.rank, world_size=info.world)
    if info.rank == failing_rank:
        fail(how)
    while True:
        dist.all_reduce(torch.ones(1))


def assert_all_gone(pids: Path) -> None:
    deadline = time.monotonic() + 5
    running = [p.read_text() for p in pids.iterdir()]
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [pid for pid in running if Path(f"/proc/{pid}").exists()]
    assert not running


FAILURES = {  # how a rank fails: what the run then says, after "error: rank R (cpu) "
    "raise": "failed: RuntimeError: out of memory",
    "user error": "failed: the prompt is too long",
    "SIGKILL": "was killed by SIGKILL",
    "exit": "failed: exited with code 3",
}


@pytest.mark.parametrize("rank0_here", [True, False], ids=["rank 0 here", "every rank spawned"])
@pytest.mark.parametrize("how", FAILURES)
def test_a_failed_rank_ends_the_run_with_one_line_naming_it(how: str, rank0_here: bool, tmp_path: Path) -> None:
    run = run_launch(functools.partial(fail_while_the_others_wait, 1, how, tmp_path), 3, rank0_here)
    assert run.returncode != 0
    assert run.stderr.splitlines() == [f"error: rank 1 (cpu) {FAILURES[how]}"]
    assert_all_gone(tmp_path)


@pytest.mark.parametrize("rank0_here", [True, False], ids=["rank 0 here", "every rank spawned"])
def test_rank_0_that_raises_is_named_too(rank0_here: bool, tmp_path: Path) -> None:
    run = run_launch(functools.partial(fail_while_the_others_wait, 0, "raise", tmp_path), 2, rank0_here)
    assert run.returncode != 0
    assert run.stderr.splitlines() == ["error: rank 0 (cpu) failed: RuntimeError: out of memory"]
    assert_all_gone(tmp_path)


@pytest.mark.parametrize(("how", "rank0_here"), [("raise", False), ("raise", True), ("SIGKILL", True)])
def test_the_failure_is_named_not_the_broken_connections_it_causes(how: str, rank0_here: bool) -> None:
    run = run_launch(functools.partial(fail_in_a_gloo_group, 2, how), 3, rank0_here)
    assert run.returncode != 0
    assert run.stderr.splitlines() == [f"error: rank 2 (cpu) {FAILURES[how]}"]


@pytest.mark.parametrize("rank0_here", [True, False], ids=["rank 0 here", "every rank spawned"])
def test_the_run_returns_rank_0s_result_and_stops_the_others_quietly(rank0_here: bool, tmp_path: Path) -> None:
    run = run_launch(functools.partial(return_while_the_others_wait, tmp_path), 2, rank0_here)
    assert (run.returncode, run.stdout, run.stderr) == (0, "(0, 2)\n", "")
    assert_all_gone(tmp_path)


def test_prio_sets_llama_cpps_nice_values_and_refuses_other_levels() -> None:
    from llamatp.launch import set_process_priority

    lowered = subprocess.run(
        [sys.executable, "-c", "import os; from llamatp.launch import set_process_priority; "
         "before = os.getpriority(os.PRIO_PROCESS, 0); set_process_priority(-1); "
         "print(before, os.getpriority(os.PRIO_PROCESS, 0))"],
        capture_output=True, text=True, check=True)
    before, after = map(int, lowered.stdout.split())
    # Low is nice 5, set (not added) as llama.cpp sets it; from above 5 that is a raise, which
    # needs privileges.
    assert after == 5 if before <= 5 else after in (5, before)
    with pytest.raises(LlamatpError, match="--prio 4: use -1"):
        set_process_priority(4)
