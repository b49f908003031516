"""The `llamatp` command: llama.cpp's flags, parsed here and nothing else."""

from __future__ import annotations

import functools
import math
import os
import random
import re
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO, TypeVar, cast

import typer

try:  # newer typer carries its own copy of click, with its own exception classes
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors

from llamatp import __version__
from llamatp.errors import LlamatpError
from llamatp.escapes import process_escapes

if TYPE_CHECKING:  # torch-free start: these modules load only when a command needs them
    from llamatp.plan import Plan
    from llamatp.runtime import ModelOptions

Command = TypeVar("Command", bound=Callable[..., Any])

MAX_SEED = 2**32 - 1  # llama.cpp's seeds are 32-bit

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    help="Run GGUF models on one device or split across several: llama.cpp's flags, PyTorch underneath.",
)

Model = Annotated[Optional[str], typer.Option("-m", "--model", help="GGUF file (default: SmolLM2-135M-Instruct Q4_1, downloaded once)")]
CtxSize = Annotated[int, typer.Option("-c", "--ctx-size", help="context size in tokens (0 = from the model)")]
BatchSize = Annotated[int, typer.Option("-b", "--batch-size", help="logical batch size")]
UBatchSize = Annotated[int, typer.Option("-ub", "--ubatch-size", help="physical batch size")]
Device = Annotated[Optional[str], typer.Option("-dev", "--device", help="devices: CUDA0,CUDA1 or cuda:0,cuda:1 or cpu,cpu (default: every GPU, else the CPU)")]
SplitModeOpt = Annotated[str, typer.Option("-sm", "--split-mode", help="none, layer or tensor")]
TensorSplit = Annotated[Optional[str], typer.Option("-ts", "--tensor-split", help="share of each device, e.g. 3,1")]
MainGpu = Annotated[int, typer.Option("-mg", "--main-gpu", help="device index used with -sm none")]
CacheTypeK = Annotated[Optional[str], typer.Option("-ctk", "--cache-type-k", help="KV cache type for K: f32, f16, bf16, q8_0 or q4_0 (default: the compute type, bf16 on GPUs, f32 on the CPU)")]
CacheTypeV = Annotated[Optional[str], typer.Option("-ctv", "--cache-type-v", help="KV cache type for V: f32, f16, bf16, q8_0 or q4_0 (default: the compute type)")]
Escape = Annotated[bool, typer.Option("-e/--no-escape", "--escape", help="process escapes in the prompt (\\n, \\t, \\xHH, ...)")]
GpuLayers = Annotated[str, typer.Option("-ngl", "--n-gpu-layers", "--gpu-layers", help="layers on the GPU: 0 (CPU only) or all (default)")]
Threads = Annotated[int, typer.Option("-t", "--threads", help="CPU threads of each worker (<= 0: the cores shared out among CPU workers)")]
ThreadsBatch = Annotated[int, typer.Option("-tb", "--threads-batch", help="CPU threads of each worker while a prompt is processed (<= 0: as -t)")]
Priority = Annotated[int, typer.Option("--prio", help="process priority: -1 low, 0 normal, 1 medium, 2 high, 3 realtime (raising it needs privileges)")]
FlashAttn = Annotated[str, typer.Option("-fa", "--flash-attn", help="flash attention: on, off or auto; llamatp's attention is always fused, so off is refused")]
LoadMode = Annotated[Optional[str], typer.Option("-lm", "--load-mode", help="how weights are read: mmap (default), none (plain reads, no memory map), dio (direct I/O, past the page cache), mlock or mmap+mlock (CPU workers then keep their weights locked in RAM)")]
NoMmap = Annotated[bool, typer.Option("--no-mmap", help="read weights with plain reads, no memory map (-lm none)")]
Mlock = Annotated[bool, typer.Option("--mlock", help="CPU workers keep their weights locked in RAM (-lm mmap+mlock)")]


def user_errors(fn: Command) -> Command:
    """Bad input ends with one line on stderr and a non-zero exit, never a traceback. So does
    anything else that fails (out of memory, a full disk): its type and first line, with the
    traceback only where LLAMATP_TRACEBACK=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LlamatpError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, click_errors.ClickException):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): nothing to say to it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as e:
            if os.environ.get("LLAMATP_TRACEBACK") == "1":
                raise
            first_line = (str(e).strip().splitlines() or [""])[0]
            print(f"error: {type(e).__name__}: {first_line}", file=sys.stderr)
            raise typer.Exit(1) from None

    return cast(Command, wrapper)


def _version_callback(value: bool) -> None:
    if value:
        print(f"llamatp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="print the version")] = False,
) -> None:
    """llamatp: llama.cpp's language, PyTorch's reach."""


def resolve_model(model: str | None) -> str:
    if model:
        return model
    from llamatp.models import default_model_path

    return str(default_model_path())


def parse_tensor_split(spec: str | None, separator: str = ",") -> tuple[float, ...]:
    if not spec:
        return ()
    try:
        values = tuple(float(v) for v in spec.replace("/", separator).split(separator) if v.strip())
    except ValueError:
        raise LlamatpError(f"-ts takes numbers separated by '{separator}', got '{spec}'") from None
    if not all(math.isfinite(v) and v >= 0 for v in values) or not any(values):
        raise LlamatpError(f"-ts proportions must be finite, non-negative and not all zero, got '{spec}'")
    return values


def parse_logit_bias(text: str) -> tuple[int, float]:
    """llama.cpp's TOKEN_ID(+/-)BIAS, as 15043+1 or 15043-inf."""
    match = re.fullmatch(r"\s*(\d+)\s*([+-])\s*(\S+)\s*", text)
    try:
        bias = float(match.group(3)) if match else math.nan
    except ValueError:
        bias = math.nan
    if match is None or math.isnan(bias):
        raise LlamatpError(f"--logit-bias {text}: expected TOKEN_ID(+/-)BIAS, as 15043+1 or 15043-inf")
    return int(match.group(1)), bias if match.group(2) == "+" else -bias


def check_flash_attn(value: str, flag: str = "-fa") -> int:
    """llama.cpp's -fa value as llama-bench records it: 1 (on) or -1 (auto). llamatp has one
    attention, the fused kernels (flash-decoding for a token, SDPA for a prompt), so off is an
    error rather than a flag quietly ignored."""
    if value in ("on", "enabled", "1", "true"):
        return 1
    if value in ("auto", "-1"):
        return -1
    if value in ("off", "disabled", "0", "false"):
        raise LlamatpError(f"{flag} {value}: llamatp's attention is always fused (flash) attention; it has no other")
    raise LlamatpError(f"{flag}: unknown value '{value}' (use on, off or auto)")


def check_load_mode(value: str, flag: str = "-lm") -> str:
    """One of llama.cpp's load modes."""
    from llamatp.gguf_file import LOAD_MODE_ACCESS

    if value not in LOAD_MODE_ACCESS:
        raise LlamatpError(f"{flag}: unknown load mode '{value}' (use {', '.join(LOAD_MODE_ACCESS)})")
    return value


def load_mode_of(load_mode: str | None, no_mmap: bool, mlock: bool) -> str:
    """The load mode that -lm, or else --no-mmap and --mlock, ask for."""
    if load_mode is not None:
        if no_mmap or mlock:
            raise LlamatpError("give -lm/--load-mode or --no-mmap/--mlock, not both")
        return check_load_mode(load_mode)
    return {(False, False): "mmap", (True, False): "none", (False, True): "mmap+mlock", (True, True): "mlock"}[
        (no_mmap, mlock)]


def resolve_devices(device: str | None, split_mode: str, main_gpu: int, gpu_layers: str) -> list[str]:
    from llamatp.devices import parse_devices
    from llamatp.launch import in_torchrun, torchrun_devices

    if split_mode == "row":
        raise LlamatpError("split mode 'row' is deprecated in llama.cpp and not provided; use -sm tensor")
    if split_mode not in ("none", "layer", "tensor"):
        raise LlamatpError(f"unknown split mode '{split_mode}' (use none, layer or tensor)")
    if in_torchrun():
        import torch

        return torchrun_devices(torch.cuda.is_available() and gpu_layers != "0")
    devices = parse_devices(device)
    if gpu_layers not in ("auto", "all", "-1", "999", "99"):
        try:
            ngl = int(gpu_layers)
        except ValueError:
            raise LlamatpError(f"-ngl takes a number, 'auto' or 'all', got '{gpu_layers}'") from None
        if ngl == 0:
            devices = ["cpu"] * (len(devices) if split_mode != "none" and all(d == "cpu" for d in devices) else 1)
        elif ngl < 0:
            raise LlamatpError(f"-ngl must be 0 or more, got {ngl}")
    if split_mode == "none":
        if not 0 <= main_gpu < len(devices):
            raise LlamatpError(f"-mg {main_gpu} is out of range ({len(devices)} device(s))")
        devices = [devices[main_gpu]]
    return devices


def model_options(model: str | None, ctx_size: int, batch_size: int, ubatch_size: int, device: str | None,
                  split_mode: str, tensor_split: str | None, main_gpu: int, gpu_layers: str,
                  cache_type_k: str | None = None, cache_type_v: str | None = None, n_threads: int = 0,
                  load_mode: str = "mmap", n_threads_batch: int = 0) -> ModelOptions:
    from llamatp.cache_types import check_cache_type
    from llamatp.runtime import ModelOptions

    if ctx_size < 0:
        raise LlamatpError(f"-c must be 0 (from the model) or positive, got {ctx_size}")
    if batch_size <= 0 or ubatch_size <= 0:
        raise LlamatpError("-b and -ub must be positive")
    type_k = check_cache_type(cache_type_k, "-ctk") if cache_type_k is not None else None
    type_v = check_cache_type(cache_type_v, "-ctv") if cache_type_v is not None else None
    devices = resolve_devices(device, split_mode, main_gpu, gpu_layers)
    proportions = parse_tensor_split(tensor_split)
    if not proportions and split_mode == "layer" and len(devices) > 1 and devices[0].startswith("cuda"):
        from llamatp.devices import free_memory

        # As llama.cpp does: without -ts, layers go to GPUs in proportion to their free memory
        # (in whole GiB, so that small differences between idle cards change nothing).
        proportions = tuple(float(max(1, free_memory(d) // 2**30)) for d in devices)
    return ModelOptions(
        model=resolve_model(model), devices=tuple(devices), split_mode=split_mode if len(devices) > 1 else "none",
        n_ctx=ctx_size, n_batch=batch_size, n_ubatch=min(ubatch_size, batch_size), tensor_split=proportions,
        cache_type_k=type_k, cache_type_v=type_v, n_threads=n_threads, n_threads_batch=n_threads_batch,
        load_mode=load_mode,
    )


def read_prompt(prompt: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LlamatpError(f"cannot read prompt file {file}: {getattr(e, 'strerror', None) or e}") from None
    return prompt or ""


def print_plan(options: ModelOptions, stream: TextIO = sys.stderr) -> tuple[Plan, list[int | None]]:
    """Print the per-device plan; returns it with each device's free memory (None: CPU)."""
    from llamatp.config import load_config
    from llamatp.devices import free_memory
    from llamatp.gguf_file import GGUFFile
    from llamatp.plan import describe
    from llamatp.runtime import plan_for

    gguf = GGUFFile(options.model)
    config = load_config(gguf)
    plan = plan_for(options, gguf, config)
    for line in describe(plan, config):
        print(line, file=stream)
    return plan, [free_memory(d) for d in options.devices]


@app.command(context_settings={"allow_interspersed_args": True})
@user_errors
def run(
    model: Model = None,
    prompt: Annotated[Optional[str], typer.Option("-p", "--prompt", help="prompt to start generation with")] = None,
    file: Annotated[Optional[Path], typer.Option("-f", "--file", help="a file containing the prompt")] = None,
    n_predict: Annotated[int, typer.Option("-n", "--n-predict", "--predict", help="tokens to predict (-1 = until end of text)")] = -1,
    ctx_size: CtxSize = 4096,
    batch_size: BatchSize = 2048,
    ubatch_size: UBatchSize = 512,
    seed: Annotated[int, typer.Option("-s", "--seed", help="RNG seed (-1 = random)")] = -1,
    temp: Annotated[float, typer.Option("--temp", help="temperature (0 = greedy)")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", help="top-k sampling (<= 0 = off)")] = 40,
    top_n_sigma: Annotated[float, typer.Option("--top-nsigma", help="top-n-sigma sampling: keep logits within N standard deviations of the best (-1.0 = off)")] = -1.0,
    typical_p: Annotated[float, typer.Option("--typical", help="locally typical sampling, p (1.0 = off)")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p", help="top-p sampling (1.0 = off)")] = 0.95,
    min_p: Annotated[float, typer.Option("--min-p", help="min-p sampling (0.0 = off)")] = 0.05,
    dynatemp_range: Annotated[float, typer.Option("--dynatemp-range", help="dynamic temperature: from --temp minus this to --temp plus this, by the entropy (0.0 = off)")] = 0.0,
    dynatemp_exp: Annotated[float, typer.Option("--dynatemp-exp", help="dynamic temperature exponent")] = 1.0,
    logit_bias: Annotated[Optional[list[str]], typer.Option("-l", "--logit-bias", help="TOKEN_ID(+/-)BIAS added to a token's logit, as 15043+1 or 15043-inf (repeatable)")] = None,
    mirostat: Annotated[int, typer.Option("--mirostat", help="Mirostat sampling in place of the other samplers: 1 or 2 (0 = off)")] = 0,
    mirostat_lr: Annotated[float, typer.Option("--mirostat-lr", help="Mirostat learning rate, eta")] = 0.1,
    mirostat_ent: Annotated[float, typer.Option("--mirostat-ent", help="Mirostat target entropy, tau (bits)")] = 5.0,
    xtc_probability: Annotated[float, typer.Option("--xtc-probability", help="XTC: how often the likeliest tokens are excluded (0.0 = off)")] = 0.0,
    xtc_threshold: Annotated[float, typer.Option("--xtc-threshold", help="XTC: tokens of at least this probability, all but the least likely, are excluded (> 0.5 = off)")] = 0.1,
    repeat_penalty: Annotated[float, typer.Option("--repeat-penalty", help="penalize repeated tokens (1.0 = off)")] = 1.0,
    repeat_last_n: Annotated[int, typer.Option("--repeat-last-n", help="tokens the penalty looks back at (0 = off, -1 = context)")] = 64,
    presence_penalty: Annotated[float, typer.Option("--presence-penalty")] = 0.0,
    frequency_penalty: Annotated[float, typer.Option("--frequency-penalty")] = 0.0,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos", help="never sample an end-of-generation token")] = False,
    reverse_prompt: Annotated[Optional[list[str]], typer.Option("-r", "--reverse-prompt", help="halt generation at this text (repeatable); in a conversation, hand the turn back")] = None,
    threads: Threads = -1,
    threads_batch: ThreadsBatch = -1,
    prio: Priority = 0,
    gpu_layers: GpuLayers = "auto",
    device: Device = None,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="list the devices and exit")] = False,
    split_mode: SplitModeOpt = "layer",
    tensor_split: TensorSplit = None,
    main_gpu: MainGpu = 0,
    cache_type_k: CacheTypeK = None,
    cache_type_v: CacheTypeV = None,
    flash_attn: FlashAttn = "auto",
    load_mode: LoadMode = None,
    no_mmap: NoMmap = False,
    mlock: Mlock = False,
    escape: Escape = True,
    no_display_prompt: Annotated[bool, typer.Option("--no-display-prompt", help="do not echo the prompt")] = False,
    conversation: Annotated[Optional[bool], typer.Option("-cnv/-no-cnv", "--conversation/--no-conversation", help="chat through the model's template")] = None,
    system_prompt: Annotated[str, typer.Option("-sys", "--system-prompt", help="system message in conversation mode")] = "",
    single_turn: Annotated[bool, typer.Option("-st", "--single-turn", help="a conversation of one exchange: answer the prompt (or one line of input) and exit")] = False,
    chat_template: Annotated[Optional[str], typer.Option("--chat-template", help="conversation template in place of the model's: its Jinja text, or a llama.cpp built-in name (chatml, llama2, mistral-v7, gemma, llama3, ...)")] = None,
    chat_template_file: Annotated[Optional[Path], typer.Option("--chat-template-file", help="conversation template from a Jinja file")] = None,
    jinja: Annotated[bool, typer.Option("--jinja/--no-jinja", help="templates are rendered with Jinja (always; --no-jinja is refused)")] = True,
    verbose_prompt: Annotated[bool, typer.Option("--verbose-prompt", help="print the prompt's tokens")] = False,
    no_warmup: Annotated[bool, typer.Option("--no-warmup", help="skip the warm-up pass before the prompt (kernels then compile in the first timed steps)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the memory plan per device and exit")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="print the plan and details")] = False,
) -> None:
    """Generate text from a prompt, or chat (-cnv)."""
    from llamatp.devices import list_devices as device_lines
    from llamatp.launch import set_process_priority

    if list_devices:
        print("\n".join(device_lines()))
        return
    if n_predict < -2:
        raise LlamatpError(f"-n must be -1 (until end of text), -2 (until the context is full) or >= 0, got {n_predict}")
    if not (0.0 <= top_p <= 1.0 and 0.0 <= min_p <= 1.0 and 0.0 <= typical_p <= 1.0 and 0.0 <= xtc_probability <= 1.0
            and 0.0 <= xtc_threshold <= 1.0 and repeat_last_n >= -1):
        raise LlamatpError("sampling flags out of range (0 <= --top-p, --min-p, --typical, --xtc-probability, "
                           "--xtc-threshold <= 1, --repeat-last-n >= -1)")
    if mirostat not in (0, 1, 2):
        raise LlamatpError(f"--mirostat must be 0 (off), 1 or 2, got {mirostat}")
    for flag, value in (("--temp", temp), ("--top-nsigma", top_n_sigma), ("--mirostat-lr", mirostat_lr),
                        ("--mirostat-ent", mirostat_ent), ("--dynatemp-range", dynatemp_range),
                        ("--dynatemp-exp", dynatemp_exp), ("--repeat-penalty", repeat_penalty),
                        ("--presence-penalty", presence_penalty), ("--frequency-penalty", frequency_penalty)):
        if not math.isfinite(value):
            raise LlamatpError(f"{flag} must be a finite number, got {value}")
    if not -1 <= seed <= MAX_SEED:
        raise LlamatpError(f"-s must be -1 (random) or 0 to {MAX_SEED}, got {seed}")
    set_process_priority(prio)
    check_flash_attn(flash_attn)
    mode = load_mode_of(load_mode, no_mmap, mlock)
    if not jinja:
        raise LlamatpError("--no-jinja: llamatp renders chat templates with Jinja only")
    if single_turn and conversation is False:
        raise LlamatpError("-st is a conversation of one exchange; it does not go with -no-cnv")
    from llamatp.chat import chosen_template

    template = chosen_template(chat_template, chat_template_file)
    text = read_prompt(prompt, file)
    if file is not None:  # as llama.cpp reads a prompt file: less one trailing newline
        text = text.removesuffix("\n")
    text = process_escapes(text) if escape else text
    reverse_prompts = tuple(process_escapes(r) if escape else r for r in reverse_prompt or [])
    if "" in reverse_prompts:
        raise LlamatpError("-r: a reverse prompt must not be empty")
    options = model_options(model, ctx_size, batch_size, ubatch_size, device, split_mode, tensor_split, main_gpu,
                            gpu_layers, cache_type_k, cache_type_v, threads, mode, threads_batch)
    from llamatp.runtime import check_host_memory

    if dry_run or verbose:  # the plan printed is the one checked, the host's memory included
        plan, free = print_plan(options)
        from llamatp.plan import check_fits

        check_fits(plan, free)
        if dry_run:
            return
    else:
        check_host_memory(options)
    from llamatp.generate import RunOptions, run_job
    from llamatp.launch import launch
    from llamatp.sampling import SamplingParams

    sampling = SamplingParams(
        temp=temp, top_n_sigma=top_n_sigma, top_k=top_k, typical_p=typical_p, top_p=top_p, min_p=min_p,
        xtc_probability=xtc_probability, xtc_threshold=xtc_threshold, mirostat=mirostat, mirostat_lr=mirostat_lr,
        mirostat_ent=mirostat_ent, dynatemp_range=dynatemp_range, dynatemp_exp=dynatemp_exp,
        logit_bias=tuple(parse_logit_bias(text) for text in logit_bias or []), repeat_penalty=repeat_penalty,
        repeat_last_n=repeat_last_n, presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
        seed=seed if seed != -1 else random.getrandbits(32), ignore_eos=ignore_eos,
    )
    job = RunOptions(
        model=options, prompt=text, n_predict=n_predict, sampling=sampling,
        display_prompt=not no_display_prompt, conversation=bool(conversation) or single_turn,
        system_prompt=system_prompt, chat_template=template, single_turn=single_turn,
        escape=escape, reverse_prompts=reverse_prompts,
        verbose_prompt=verbose_prompt, verbose=verbose, warmup=not no_warmup,
    )
    launch(functools.partial(run_job, job), list(options.devices), rank0_here=True)


@app.command()
@user_errors
def perplexity(
    model: Model = None,
    file: Annotated[Optional[Path], typer.Option("-f", "--file", help="text to score")] = None,
    ctx_size: Annotated[int, typer.Option("-c", "--ctx-size", help="tokens per chunk")] = 512,
    batch_size: BatchSize = 2048,
    ubatch_size: UBatchSize = 512,
    chunks: Annotated[int, typer.Option("--chunks", help="score at most this many chunks (-1 = all)")] = -1,
    gpu_layers: GpuLayers = "auto",
    device: Device = None,
    split_mode: SplitModeOpt = "layer",
    tensor_split: TensorSplit = None,
    main_gpu: MainGpu = 0,
    cache_type_k: CacheTypeK = None,
    cache_type_v: CacheTypeV = None,
    flash_attn: FlashAttn = "auto",
    threads: Threads = -1,
    threads_batch: ThreadsBatch = -1,
    prio: Priority = 0,
    load_mode: LoadMode = None,
    no_mmap: NoMmap = False,
    mlock: Mlock = False,
) -> None:
    """Perplexity of a text file, as llama-perplexity computes it."""
    from llamatp.launch import launch, set_process_priority
    from llamatp.perplexity import MIN_CONTEXT, PerplexityOptions, perplexity_job
    from llamatp.runtime import check_host_memory

    set_process_priority(prio)
    check_flash_attn(flash_attn)
    mode = load_mode_of(load_mode, no_mmap, mlock)
    if file is None:
        raise LlamatpError("perplexity needs a text file: -f FILE")
    if ctx_size < MIN_CONTEXT:
        raise LlamatpError(f"-c must be at least {MIN_CONTEXT} for perplexity, which scores the second half of "
                           f"each chunk, got {ctx_size}")
    text = read_prompt(None, file)
    options = model_options(model, ctx_size, batch_size, ubatch_size, device, split_mode, tensor_split, main_gpu,
                            gpu_layers, cache_type_k, cache_type_v, threads, mode, threads_batch)
    check_host_memory(options)
    launch(functools.partial(perplexity_job, PerplexityOptions(options, text, chunks)), list(options.devices),
           rank0_here=True)


@app.command()
@user_errors
def tokenize(
    model: Model = None,
    prompt: Annotated[Optional[str], typer.Option("-p", "--prompt", help="text to tokenize")] = None,
    file: Annotated[Optional[Path], typer.Option("-f", "--file", help="file to tokenize")] = None,
    ids: Annotated[bool, typer.Option("--ids", help="print only the ids, as a Python list")] = False,
    no_bos: Annotated[bool, typer.Option("--no-bos", help="do not add BOS even if the model wants it")] = False,
    no_parse_special: Annotated[bool, typer.Option("--no-parse-special", help="treat special-token text as plain text")] = False,
    show_count: Annotated[bool, typer.Option("--show-count", help="print the number of tokens")] = False,
    no_escape: Annotated[bool, typer.Option("--no-escape", help="do not process escapes (\\n, \\t, ...) in the text")] = False,
) -> None:
    """Print the tokens of a text, like llama-tokenize. Works on vocab-only GGUF files."""
    from llamatp.gguf_file import GGUFFile
    from llamatp.tokenizer import Tokenizer, print_token_pieces

    text = read_prompt(prompt, file)
    text = text if no_escape else process_escapes(text)
    tokenizer = Tokenizer.from_metadata(GGUFFile(resolve_model(model)).metadata)
    tokens = tokenizer.encode(text, add_special=not no_bos, parse_special=not no_parse_special)
    if ids:
        print(f"[{', '.join(str(t) for t in tokens)}]")
    else:
        print_token_pieces(tokens, tokenizer, sys.stdout)
    if show_count:
        print(f"Total number of tokens: {len(tokens)}")


@app.command()
@user_errors
def info(
    model: Annotated[Optional[str], typer.Argument(help="GGUF file (default: the default model)")] = None,
    ctx_size: CtxSize = 4096,
    ubatch_size: UBatchSize = 512,
    device: Device = None,
    split_mode: Annotated[Optional[str], typer.Option("-sm", "--split-mode", help="also print the plan for this split")] = None,
    tensor_split: TensorSplit = None,
    main_gpu: MainGpu = 0,
) -> None:
    """Architecture, size, tensor types, tokenizer and, with -sm/-dev/-ts, the per-device plan."""
    from llamatp.info import describe_model

    path = resolve_model(model)
    options = None  # checked before anything is printed
    if split_mode is not None or device is not None or tensor_split is not None:
        options = model_options(path, ctx_size, max(ubatch_size, 1), ubatch_size, device, split_mode or "layer",
                                tensor_split, main_gpu, "auto")
    for line in describe_model(path):
        print(line)
    if options is not None:
        print_plan(options, sys.stdout)


@app.command()
@user_errors
def bench(
    model: Annotated[Optional[list[str]], typer.Option("-m", "--model", help="GGUF file(s), comma-separated or repeated (default: the default model)")] = None,
    n_prompt: Annotated[Optional[list[str]], typer.Option("-p", "--n-prompt", help="prompt lengths, e.g. 128,512 or 16-512*2 (default: 512)")] = None,
    n_gen: Annotated[Optional[list[str]], typer.Option("-n", "--n-gen", help="generated lengths (default: 128)")] = None,
    n_pg: Annotated[Optional[list[str]], typer.Option("-pg", help="prompt then generation: pp,tg (repeatable)")] = None,
    n_depth: Annotated[Optional[list[str]], typer.Option("-d", "--n-depth", help="tokens already in the context (default: 0)")] = None,
    batch_size: Annotated[Optional[list[str]], typer.Option("-b", "--batch-size", help="logical batch sizes (default: 2048)")] = None,
    ubatch_size: Annotated[Optional[list[str]], typer.Option("-ub", "--ubatch-size", help="physical batch sizes (default: 512)")] = None,
    gpu_layers: Annotated[Optional[list[str]], typer.Option("-ngl", "--n-gpu-layers", help="0 (CPU) or all layers (default: 99)")] = None,
    split_mode: Annotated[Optional[list[str]], typer.Option("-sm", "--split-mode", help="none, layer, tensor; comma list (default: layer)")] = None,
    main_gpu: Annotated[Optional[list[str]], typer.Option("-mg", "--main-gpu", help="device index used with -sm none (default: 0)")] = None,
    tensor_split: Annotated[Optional[list[str]], typer.Option("-ts", "--tensor-split", help="shares: '/' between devices, ',' between tests, e.g. 3/1,1/1")] = None,
    cache_type_k: Annotated[Optional[list[str]], typer.Option("-ctk", "--cache-type-k", help="KV cache types for K: f32, f16, bf16, q8_0, q4_0 (default: the compute type)")] = None,
    cache_type_v: Annotated[Optional[list[str]], typer.Option("-ctv", "--cache-type-v", help="KV cache types for V (default: the compute type)")] = None,
    threads: Annotated[Optional[list[str]], typer.Option("-t", "--threads", help="CPU threads of each worker, comma list (default: the cores shared out among CPU workers)")] = None,
    no_kv_offload: Annotated[Optional[list[str]], typer.Option("-nkvo", "--no-kv-offload", help="0 only (llama-bench's default): the KV cache stays on the device")] = None,
    n_cpu_moe: Annotated[Optional[list[str]], typer.Option("-ncmoe", "--n-cpu-moe", help="0 only (llama-bench's default)")] = None,
    no_op_offload: Annotated[Optional[list[str]], typer.Option("-nopo", "--no-op-offload", help="0 only (llama-bench's default)")] = None,
    embeddings: Annotated[Optional[list[str]], typer.Option("-embd", "--embeddings", help="0 only (llama-bench's default)")] = None,
    flash_attn: Annotated[Optional[list[str]], typer.Option("-fa", "--flash-attn", help="on or auto, comma list (default: auto); off is refused, the attention being always fused")] = None,
    load_mode: Annotated[Optional[list[str]], typer.Option("-lm", "--load-mode", help="none, mmap, mlock, mmap+mlock, dio; comma list (default: mmap)")] = None,
    mmap: Annotated[Optional[list[str]], typer.Option("-mmp", "--mmap", help="0 (-lm none) or 1 (-lm mmap), comma list; older spelling of -lm")] = None,
    direct_io: Annotated[Optional[list[str]], typer.Option("-dio", "--direct-io", help="0 (-lm none) or 1 (-lm dio), comma list; older spelling of -lm")] = None,
    device: Device = None,
    repetitions: Annotated[int, typer.Option("-r", "--repetitions", help="times to repeat each test")] = 5,
    no_warmup: Annotated[bool, typer.Option("--no-warmup", help="skip the warm-up run before each test")] = False,
    delay: Annotated[int, typer.Option("--delay", help="seconds to wait before each test (to let the GPUs cool)")] = 0,
    prio: Priority = 0,
    progress: Annotated[bool, typer.Option("--progress", help="a line on stderr for each step of each test")] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="md, csv, json, jsonl, sql or none")] = "md",
    output_err: Annotated[str, typer.Option("-oe", "--output-err", help="a second format, printed to stderr (default: none)")] = "none",
    list_devices: Annotated[bool, typer.Option("--list-devices", help="list the devices and exit")] = False,
) -> None:
    """Measure prompt processing and generation speed, like llama-bench."""
    from llamatp.bench import bench_params, run_bench
    from llamatp.devices import list_devices as device_lines
    from llamatp.launch import set_process_priority

    if list_devices:
        print("\n".join(device_lines()))
        return
    params = bench_params(
        model or [], n_prompt or [], n_gen or [], n_pg or [], n_depth or [], batch_size or [], ubatch_size or [],
        gpu_layers or [], split_mode or [], main_gpu or [], tensor_split or [], cache_type_k or [],
        cache_type_v or [], device, repetitions, not no_warmup, output, flash_attn=flash_attn or [],
        n_threads=threads or [], load_mode=load_mode or [], mmap=mmap or [], direct_io=direct_io or [],
        delay=delay, progress=progress, output_err=output_err,
        fixed={"-nkvo": no_kv_offload or [], "-ncmoe": n_cpu_moe or [], "-nopo": no_op_offload or [],
               "-embd": embeddings or []},
    )
    set_process_priority(prio)
    run_bench(params)


def _register_optional_commands() -> None:
    from llamatp.synth import synth_command

    app.command("synth")(user_errors(synth_command))


_register_optional_commands()


def main() -> None:
    """Entry point: click's own usage errors are also reduced to one line."""
    try:
        code = app(standalone_mode=False)
    except getattr(click_errors, "NoArgsIsHelpError", ()) as e:  # click < 8.2 prints the help itself
        print(e.format_message(), file=sys.stderr)
        code = 0
    except click_errors.ClickException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        code = e.exit_code
    except typer.Abort:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    try:
        sys.stdout.flush()
    except OSError as e:  # a full disk or a closed pipe under the output
        if not isinstance(e, BrokenPipeError):
            print(f"error: cannot write the output: {e.strerror or e}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exit's flush is quiet
        code = code or 1
    sys.exit(code if isinstance(code, int) else 0)
