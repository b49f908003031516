"""`llamatp perplexity`: llama-perplexity's method and output.

The text is cut into chunks of n_ctx tokens, each evaluated from an empty context with
its first token replaced by BOS (where the model adds one); the second half of each
chunk is scored, so every scored token has at least n_ctx/2 tokens of context.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch

from llamatp.errors import LlamatpError
from llamatp.launch import WorkerInfo
from llamatp.runtime import ModelOptions, open_runtime
from llamatp.tokenizer import Tokenizer


MIN_CONTEXT = 4  # the least context whose second half scores a token


@dataclass(frozen=True)
class PerplexityOptions:
    model: ModelOptions
    text: str
    n_chunks: int = -1


@dataclass
class PerplexityResult:
    ppl: float
    ppl_err: float
    chunks: int


def perplexity_job(opts: PerplexityOptions, info: WorkerInfo) -> PerplexityResult:
    rt = open_runtime(opts.model, info)
    tokenizer = Tokenizer.from_metadata(rt.gguf.metadata)
    tokens = tokenizer.encode(opts.text, add_special=True, parse_special=False)
    n_ctx = rt.plan.n_ctx
    if len(tokens) < 2 * n_ctx:
        raise LlamatpError(
            f"you need at least {2 * n_ctx} tokens to evaluate perplexity with a context of {n_ctx}; "
            f"the text has {len(tokens)} tokens (lower -c)"
        )
    n_chunks = len(tokens) // n_ctx
    if opts.n_chunks > 0:
        n_chunks = min(n_chunks, opts.n_chunks)
    say = print if info.rank == 0 else (lambda *a, **k: None)
    say(f"perplexity: tokenizing the input .. {len(tokens)} tokens", file=sys.stderr)
    say(f"perplexity: calculating perplexity over {n_chunks} chunks, n_ctx={n_ctx}, batch_size={rt.plan.n_ubatch}",
        file=sys.stderr)
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    started = time.perf_counter()
    for i in range(n_chunks):
        chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
        if tokenizer.add_bos and tokenizer.bos_id is not None:
            chunk = [tokenizer.bos_id] + chunk[1:]
        logits = rt.engine.forward(chunk, 0, all_logits=True, repeated=True)
        logprobs = torch.log_softmax(logits[first : n_ctx - 1].double(), dim=-1)
        targets = torch.tensor(chunk[first + 1 : n_ctx], device=logprobs.device)
        picked = logprobs.gather(1, targets[:, None]).squeeze(1)
        nll -= float(picked.sum())
        nll2 += float((picked * picked).sum())
        count += picked.numel()
        if i == 0:
            seconds = time.perf_counter() - started
            say(f"perplexity: {seconds:.2f} seconds per pass - ETA {seconds * n_chunks / 60:.2f} minutes",
                file=sys.stderr)
        say(f"[{i + 1}]{math.exp(nll / count):.4f},", end="", flush=True)
    say("")
    mean = nll / count
    variance = nll2 / count - mean * mean
    ppl = math.exp(mean)
    err = math.sqrt(variance / (count - 1)) * ppl if variance > 0 and count > 1 else 0.0
    say(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}", file=sys.stderr)  # llama.cpp logs it to stderr
    return PerplexityResult(ppl, err, n_chunks)
