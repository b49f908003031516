"""What a worker does with its model beyond building it: keeping it in RAM (load modes mlock), and
the CPU threads it runs prompts and decode steps with (-t, -tb)."""

import re
from pathlib import Path

import pytest
import torch

from llamatp.launch import WorkerInfo
from llamatp.runtime import ModelOptions, lock_in_ram, open_runtime


def locked_kib() -> int:
    return int(re.search(r"^VmLck:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the locked size from /proc (Linux)")
def test_lock_in_ram_locks_every_tensor_a_module_holds_or_warns(capfd: pytest.CaptureFixture[str]) -> None:
    """The tensors a module holds as attributes or buffers are locked, or, where RLIMIT_MEMLOCK
    refuses, a warning says so, none stays locked, and nothing fails."""
    model = torch.nn.Module()
    model.weight_t = torch.randn(1024, 1024)  # 4 MiB
    model.register_buffer("table", torch.randn(512, 1024))  # 2 MiB
    before = locked_kib()
    lock_in_ram(model)
    warning = capfd.readouterr().err
    if warning:
        assert warning.startswith("warning: could not lock the model in RAM (6 MiB; mlock: ")
        assert locked_kib() == before
    else:
        assert locked_kib() - before >= 6 * 1024


def test_a_cpu_worker_runs_prompts_on_the_batch_threads_and_decode_on_its_threads(smollm2_path: Path) -> None:
    """-tb: a prompt (any pass of Engine.forward) runs with n_threads_batch threads, a decode step
    with n_threads, as llama.cpp's -tb and -t."""
    before = torch.get_num_threads()
    try:
        options = ModelOptions(model=str(smollm2_path), devices=("cpu",), n_ctx=64, n_threads=2, n_threads_batch=1)
        engine = open_runtime(options, WorkerInfo(0, 1, "cpu")).engine
        threads_seen: list[int] = []
        engine.model.register_forward_pre_hook(lambda module, args: threads_seen.append(torch.get_num_threads()))
        engine.forward([1, 2, 3], 0)
        engine.decode(4, 3)
        assert threads_seen == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
