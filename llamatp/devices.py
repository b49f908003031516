"""Device names as llama.cpp writes them (CUDA0) or as torch does (cuda:0), and their memory."""

from __future__ import annotations

import re

import torch

from llamatp.errors import LlamatpError

_LLAMA_CPP_NAME = re.compile(r"cuda(\d+)", re.IGNORECASE)


def parse_devices(spec: str | None) -> list[str]:
    """`-dev` to torch device strings. None: every visible GPU, else the CPU."""
    if spec is None or spec.strip() in ("", "auto"):
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n else ["cpu"]
    devices = []
    for name in (part.strip() for part in spec.split(",")):
        match = _LLAMA_CPP_NAME.fullmatch(name)
        if match:
            name = f"cuda:{match.group(1)}"
        elif name.lower() == "cpu":
            name = "cpu"
        elif name.lower() == "cuda":
            name = "cuda:0"
        elif not re.fullmatch(r"cuda:\d+", name.lower()):
            raise LlamatpError(f"unknown device '{name}' (use CUDA0, cuda:0 or cpu; see --list-devices)")
        if name.startswith("cuda:"):
            index = int(name.split(":")[1])
            if index >= torch.cuda.device_count():
                raise LlamatpError(f"device {name} not found ({torch.cuda.device_count()} CUDA device(s) visible)")
        devices.append(name.lower())
    if len({d for d in devices if d != "cpu"}) != len([d for d in devices if d != "cpu"]):
        raise LlamatpError(f"device listed twice in '{spec}'")
    if len({d.split(":")[0] for d in devices}) > 1:
        raise LlamatpError("mixing CPU and CUDA devices in one run is not supported")
    return devices


def free_memory(device: str) -> int | None:
    """Free bytes on a GPU; on the CPU the host's available memory, shared by every CPU worker
    (None where the system does not say)."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def list_devices() -> list[str]:
    """Lines like llama.cpp's --list-devices."""
    lines = ["Available devices:"]
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        lines.append(f"  CUDA{i}: {name} ({total // 2**20} MiB, {free // 2**20} MiB free)")
    lines.append("  cpu: CPU (torch threads: %d)" % torch.get_num_threads())
    return lines
