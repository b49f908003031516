"""What a worker does with its model beyond building it: keeping it in RAM (load modes mlock)."""

import re
from pathlib import Path

import pytest
import torch

from llamatp.runtime import lock_in_ram


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
