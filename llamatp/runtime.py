"""Everything one rank needs to run a model: the file, its plan, the process group and the engine."""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, field

import torch

from llamatp.cache_types import check_head_size
from llamatp.comm import Comm, init_process_group
from llamatp.config import ModelConfig, load_config
from llamatp.devices import free_memory
from llamatp.engine import Engine
from llamatp.errors import LlamatpError
from llamatp.gguf_file import LOAD_MODE_ACCESS, GGUFFile
from llamatp.kv_cache import dtype_name
from llamatp.linear import GEMV_MAX_ROWS
from llamatp.launch import WorkerInfo
from llamatp.loader import build_model
from llamatp.plan import Plan, SplitMode, check_fits, check_shard_fits, make_plan


@dataclass(frozen=True)
class ModelOptions:
    """What `-m -c -b -ub -sm -dev -ts -ctk -ctv -t -tb -lm` ask for; shared by run, perplexity and bench."""

    model: str
    devices: tuple[str, ...]
    split_mode: SplitMode = "none"
    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    tensor_split: tuple[float, ...] = field(default_factory=tuple)
    cache_type_k: str | None = None  # None: the compute type
    cache_type_v: str | None = None
    n_threads: int = 0  # CPU threads of each worker; <= 0: the cores shared out among CPU workers
    n_threads_batch: int = 0  # CPU threads of each worker for prompts; <= 0: as n_threads
    load_mode: str = "mmap"  # llama.cpp's: none, mmap, mlock, mmap+mlock or dio
    use_graphs: bool = True


@dataclass
class Runtime:
    gguf: GGUFFile
    config: ModelConfig
    plan: Plan
    comm: Comm
    engine: Engine
    device: torch.device
    allreduce: str  # the backend of small all-reduces under tensor split


def compute_dtype(device: str) -> torch.dtype:
    return torch.float32 if device.startswith("cpu") else torch.bfloat16


def plan_for(options: ModelOptions, gguf: GGUFFile, config: ModelConfig) -> Plan:
    if not gguf.tensors:
        raise LlamatpError(f"{gguf.path} holds no weights (a vocab-only file?)")
    dtype = compute_dtype(options.devices[0])
    cache_types = (options.cache_type_k or dtype_name(dtype), options.cache_type_v or dtype_name(dtype))
    check_head_size(cache_types, config.head_dim)
    n_ctx = options.n_ctx if options.n_ctx > 0 else config.n_ctx_train
    return make_plan(
        config, gguf.tensors, list(options.devices), options.split_mode, n_ctx,
        min(options.n_ubatch, options.n_batch), list(options.tensor_split) or None,
        cache_types=cache_types, act_bytes=torch.finfo(dtype).bits // 8,
    )


def check_host_memory(options: ModelOptions) -> None:
    """CPU workers share the host's memory: their shares are checked together, before any
    starts (a worker's own check would count what the others have loaded already)."""
    if options.devices[0] != "cpu":
        return
    gguf = GGUFFile(options.model)
    check_fits(plan_for(options, gguf, load_config(gguf)), [free_memory(d) for d in options.devices])


def open_runtime(options: ModelOptions, info: WorkerInfo) -> Runtime:
    gguf = GGUFFile(options.model, access=LOAD_MODE_ACCESS[options.load_mode])
    config = load_config(gguf)
    plan = plan_for(options, gguf, config)
    if plan.world_size != info.world:
        raise LlamatpError(f"{plan.world_size} devices planned but {info.world} processes started")
    device = torch.device(info.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        check_shard_fits(plan.shards[info.rank], free_memory(info.device))
    # The host's memory was checked before CPU workers started (`check_host_memory`). They share
    # the cores unless -t says otherwise; OpenMP threads that wait on each other spin badly.
    if options.n_threads > 0:
        torch.set_num_threads(options.n_threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world))
    batch_threads = options.n_threads_batch if device.type == "cpu" and options.n_threads_batch > 0 else 0
    comm = init_process_group(info.rank, info.world, device)
    dtype = compute_dtype(info.device)
    allreduce = "none"
    if plan.mode == "tensor":
        allreduce = comm.enable_symmetric_memory(config.n_embd, GEMV_MAX_ROWS, dtype)
    model = build_model(gguf, config, plan, info.rank, device, dtype, comm.all_reduce, comm.reduce_add_rms_norm)
    if options.load_mode in ("mlock", "mmap+mlock") and device.type == "cpu":
        lock_in_ram(model)
    engine = Engine(model, comm, plan, device, dtype, use_graphs=options.use_graphs, batch_threads=batch_threads)
    return Runtime(gguf, config, plan, comm, engine, device, allreduce)


def lock_in_ram(model: torch.nn.Module) -> None:
    """Keep the tensors a CPU model's modules hold (weights, norms, the embedding table) in RAM:
    mlock(2), as llama.cpp's mlock load modes do. GPU workers keep no weights in host memory.
    A refusal (the RLIMIT_MEMLOCK limit) is a warning, as in llama.cpp: the model runs unlocked."""
    storages = {}
    for module in model.modules():
        for value in [*vars(module).values(), *module._buffers.values()]:
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel():
                storage = value.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mlock.argtypes = libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    locked = []
    for address, nbytes in storages.items():
        if libc.mlock(address, nbytes) != 0:
            reason = os.strerror(ctypes.get_errno())
            for done in locked:  # all or nothing: the tensors locked so far are let go again
                libc.munlock(*done)
            print(f"warning: could not lock the model in RAM ({sum(storages.values()) / 2**20:.0f} MiB; mlock: {reason}); "
                  "it runs unlocked. Raise the limit with 'ulimit -l'", file=sys.stderr)
            return
        locked.append((address, nbytes))
