"""Where the time of a prompt pass and of decode steps goes, per kernel, on rank 0, beside
the wall time of the same step run once without the profiler. With kernels launched early,
each kernel's own time includes its wait; `--critical-path` also prints what each kernel adds
to the steps: the time from the end of the kernel before it to its own end.

    python scripts/profile_step.py MODEL.gguf --devices cuda:0,cuda:1 --mode tensor
"""

from __future__ import annotations

import argparse
import collections
import functools
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from llamatp.launch import WorkerInfo, launch
from llamatp.runtime import ModelOptions, open_runtime


def critical_path(prof: profile, n_steps: int) -> str:
    """Each kernel's time from the end of the kernel before it (in launch order) to its own end,
    summed by kernel name per step: on one stream these add up to the steps' GPU time."""
    kernels = sorted((e for e in prof.events() if e.device_type == DeviceType.CUDA), key=lambda e: e.time_range.start)
    added: dict[str, list[float]] = collections.defaultdict(list)
    last_end = kernels[0].time_range.start if kernels else 0
    for e in kernels:
        added[e.name[:70]].append(max(e.time_range.end - last_end, 0))
        last_end = max(last_end, e.time_range.end)
    rows = sorted(added.items(), key=lambda kv: -sum(kv[1]))
    lines = [f"{'kernel (critical path)':72} {'calls':>6} {'us a step':>10} {'us each':>8}"]
    lines += [f"{name:72} {len(t) / n_steps:6.0f} {sum(t) / n_steps:10.1f} {sum(t) / len(t):8.2f}" for name, t in rows]
    total = sum(sum(t) for t in added.values()) / n_steps
    return "\n".join(lines + [f"{'total':72} {'':6} {total:10.1f}"])


def profile_job(options: ModelOptions, n_prompt: int, n_decode: int, repeated: bool, critical: bool,
                info: WorkerInfo) -> str:
    rt = open_runtime(options, info)
    prompt = torch.randint(0, 1000, (n_prompt,), generator=torch.Generator().manual_seed(0)).tolist()
    for _ in range(2):  # compile and warm up (and with --repeated, capture the prompt pass)
        rt.engine.forward(prompt, 0, repeated=repeated)
        rt.engine.decode(1, n_prompt)
    torch.cuda.synchronize()
    tables = []
    for name, step in (("prompt", lambda: rt.engine.forward(prompt, 0, repeated=repeated)),
                       ("decode", lambda: [rt.engine.decode(1, n_prompt + i) for i in range(n_decode)])):
        rt.comm.barrier()
        started = time.perf_counter()  # without the profiler: GPU busy time against wall time
        step()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - started) * 1e3
        rt.comm.barrier()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        tables.append(f"--- {name} ({options.split_mode}, rank {info.rank}), {wall_ms:.2f} ms wall unprofiled\n"
                      + prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))
        if critical and name == "decode":
            tables.append(critical_path(prof, n_decode))
    return "\n".join(tables)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--devices", required=True)
    parser.add_argument("--mode", default="tensor")
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-decode", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=1024, help="context size (the decode kernels size their work to it)")
    parser.add_argument("--repeated", action="store_true", help="the prompt pass as a repeated one (a CUDA graph)")
    parser.add_argument("--cache-type", help="K and V cache type (-ctk/-ctv); default: the compute type")
    parser.add_argument("--critical-path", action="store_true", help="also what each decode kernel adds to a step")
    args = parser.parse_args()
    devices = args.devices.split(",")
    options = ModelOptions(model=args.model, devices=tuple(devices), split_mode=args.mode, n_ctx=args.ctx,
                           cache_type_k=args.cache_type, cache_type_v=args.cache_type)
    print(launch(functools.partial(profile_job, options, args.n_prompt, args.n_decode, args.repeated,
                                   args.critical_path), devices))


if __name__ == "__main__":
    main()
