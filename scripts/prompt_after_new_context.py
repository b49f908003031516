"""Does a prompt pass at depth run slower once the engine has changed its context?

`llamatp bench -p 512 -d 0,8192` gives each test a context of its own (`Engine.set_context`), so
the pass at depth 8192 runs after the context changed twice; run alone (`-d 8192`) it does not.
This times one 512-token pass at position 8192 (after 8192 positions filled), as a replayed CUDA
graph and eagerly, in a fresh engine and again after the context went to 1024 positions (a
512-token pass at position 0 captured there) and back. Host time from the pass's start to the
GPU's end, and the GPU's own span (CUDA events), medians of 5 after one untimed. A capture that
fails says why on stderr (`graphs.PassGraphs`).

    python scripts/prompt_after_new_context.py MODEL.gguf --devices cuda:0,cuda:1 --mode tensor
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from llamatp.launch import WorkerInfo, launch
from llamatp.runtime import ModelOptions, open_runtime

DEPTH, N_PROMPT = 8192, 512


def job(options: ModelOptions, info: WorkerInfo) -> str:
    rt = open_runtime(options, info)
    engine = rt.engine
    prompt = [1000 + i for i in range(N_PROMPT)]
    filler = [2000 + i % 1000 for i in range(DEPTH)]

    def fill() -> None:
        for i in range(0, DEPTH, 2048):
            engine.forward(filler[i : i + 2048], i)
        torch.cuda.synchronize()

    def timed(label: str, repeated: bool) -> str:
        host, gpu = [], []
        for _ in range(6):
            rt.comm.barrier()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            began = time.perf_counter()
            start.record()
            engine.forward(prompt, DEPTH, repeated=repeated)
            end.record()
            torch.cuda.synchronize()
            host.append(time.perf_counter() - began)
            gpu.append(start.elapsed_time(end) / 1e3)
        h, g = statistics.median(host[1:]), statistics.median(gpu[1:])
        return (f"{label:42} {N_PROMPT / h:9.0f} t/s host, {N_PROMPT / g:9.0f} t/s GPU span, "
                f"{engine.n_prompt_graphs} prompt graphs")

    lines = []
    fill()
    lines += [timed("fresh engine, graph", True), timed("fresh engine, eager", False)]
    engine.set_context(1024)
    for _ in range(3):
        engine.forward(prompt, 0, repeated=True)
    engine.set_context(DEPTH + N_PROMPT)
    fill()
    lines += [timed("after two new contexts, graph", True), timed("after two new contexts, eager", False)]
    torch.cuda.empty_cache()
    lines += [timed("the same after empty_cache, graph", True)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--devices", default="cuda:0")
    parser.add_argument("--mode", default="none")
    args = parser.parse_args()
    devices = args.devices.split(",")
    options = ModelOptions(model=args.model, devices=tuple(devices), split_mode=args.mode, n_ctx=DEPTH + N_PROMPT)
    print(launch(functools.partial(job, options), devices))


if __name__ == "__main__":
    main()
