"""Compare the logits of split modes with one device's, on any devices.

    python scripts/compare_splits.py MODEL.gguf --devices cuda:0,cuda:1 --modes layer,tensor

Prints one line per mode: relative error of the logits against `-sm none` on the first
device, and whether greedy decoding picks the same tokens. Used on the GPU machines,
where the CI's CPU tests cannot reach.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from llamatp.launch import WorkerInfo, launch
from llamatp.runtime import ModelOptions, open_runtime


def logits_job(options: ModelOptions, prompt: list[int], n_decode: int, info: WorkerInfo) -> tuple[torch.Tensor, list[int], float]:
    started = time.perf_counter()
    rt = open_runtime(options, info)
    load_s = time.perf_counter() - started
    prefill = rt.engine.forward(prompt, 0, all_logits=True).float().cpu()
    # The same pass as a repeated one: captured as a graph on its first run, replayed on the second.
    replayed = [rt.engine.forward(prompt, 0, all_logits=True, repeated=True).float().cpu() for _ in range(2)]
    replay_diff = max(float((r - prefill).abs().max()) for r in replayed)
    token, tokens = int(prefill[-1].argmax()), []
    for pos in range(len(prompt), len(prompt) + n_decode):
        tokens.append(token)
        token = int(rt.engine.decode(token, pos)[-1].argmax())
    peak = torch.cuda.max_memory_allocated(rt.device) if rt.device.type == "cuda" else 0
    print(f"rank {info.rank} ({info.device}): load {load_s:.1f} s, peak {peak / 2**30:.2f} GiB, "
          f"weights {rt.plan.shards[info.rank].weight_bytes / 2**30:.2f} GiB, "
          f"prompt graphs {rt.engine.n_prompt_graphs}, replayed max |diff| {replay_diff:.3g}", flush=True)
    return prefill, tokens, load_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--devices", required=True)
    parser.add_argument("--modes", default="layer,tensor")
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--n-prompt", type=int, default=64)
    parser.add_argument("--n-decode", type=int, default=16)
    parser.add_argument("--skip-none", action="store_true", help="only run the split modes (model too big for one device)")
    parser.add_argument("--base-device", help="run the -sm none baseline here (e.g. cpu) instead of the first device")
    parser.add_argument("-ctk", "--cache-type-k", help="KV cache type of K in every run (as llamatp run's)")
    parser.add_argument("-ctv", "--cache-type-v", help="KV cache type of V in every run")
    args = parser.parse_args()
    devices = args.devices.split(",")
    prompt = torch.randint(0, 1000, (args.n_prompt,), generator=torch.Generator().manual_seed(0)).tolist()
    runs = [] if args.skip_none else [("base", "none", [args.base_device or devices[0]])]
    runs += [(f"{mode} x{len(devices) if mode != 'none' else 1}", mode, devices if mode != "none" else devices[:1])
             for mode in args.modes.split(",") if mode]
    results = {}
    for label, mode, devs in runs:
        options = ModelOptions(model=args.model, devices=tuple(devs), split_mode=mode, n_ctx=args.n_ctx,
                               cache_type_k=args.cache_type_k, cache_type_v=args.cache_type_v)
        results[label] = launch(functools.partial(logits_job, options, prompt, args.n_decode), devs)
        print(f"{label} ({','.join(devs)}): load {results[label][2]:.1f} s, greedy {results[label][1][:8]}", flush=True)
    base = results.get("base")
    for label, (logits, tokens, _) in results.items():
        if base is not None and label != "base":
            rel = float((logits - base[0]).norm() / base[0].norm())
            same_top1 = float((logits.argmax(-1) == base[0].argmax(-1)).float().mean())
            print(f"{label}: logits rel err vs base {rel:.2e}, prefill top-1 agreement {same_top1:.3f}, "
                  f"greedy decode identical: {tokens == base[1]}")


if __name__ == "__main__":
    main()
