"""`llamatp run`: complete a prompt or hold a conversation, streaming tokens as they come."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from llamatp.chat import ChatSession
from llamatp.errors import LlamatpError
from llamatp.escapes import process_escapes
from llamatp.launch import WorkerInfo
from llamatp.runtime import ModelOptions, Runtime, open_runtime
from llamatp.sampling import Sampler, SamplingParams
from llamatp.tokenizer import StreamDecoder, Tokenizer, print_token_pieces


@dataclass(frozen=True)
class RunOptions:
    model: ModelOptions
    prompt: str
    n_predict: int = -1
    sampling: SamplingParams = SamplingParams()
    display_prompt: bool = True
    conversation: bool = False
    system_prompt: str = ""
    chat_template: str | None = None  # None: the model's own
    single_turn: bool = False  # a conversation of one exchange
    verbose_prompt: bool = False
    verbose: bool = False
    escape: bool = True  # process escapes in chat input, as in the prompt
    reverse_prompts: tuple[str, ...] = ()  # -r: halt generation at any of these
    warmup: bool = True  # --no-warmup turns it off


@dataclass
class Timings:
    load_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_tokens: int = 0
    eval_ms: float = 0.0
    eval_runs: int = 0
    sample_ms: float = 0.0
    sample_runs: int = 0

    def lines(self) -> list[str]:
        p = "llama_perf_context_print:"
        return [
            "llama_perf_sampler_print:    sampling time = "
            f"{self.sample_ms:10.2f} ms / {self.sample_runs:5d} runs   {_rate(self.sample_ms, self.sample_runs)}",
            f"{p}        load time = {self.load_ms:10.2f} ms",
            f"{p} prompt eval time = {self.prompt_ms:10.2f} ms / {self.prompt_tokens:5d} tokens "
            f"{_rate(self.prompt_ms, self.prompt_tokens)}",
            f"{p}        eval time = {self.eval_ms:10.2f} ms / {self.eval_runs:5d} runs   "
            f"{_rate(self.eval_ms, self.eval_runs)}",
            f"{p}       total time = {self.load_ms + self.prompt_ms + self.eval_ms + self.sample_ms:10.2f} ms / "
            f"{self.prompt_tokens + self.eval_runs:5d} tokens",
        ]


def _rate(ms: float, n: int) -> str:
    per = ms / n if n else 0.0
    return f"({per:8.2f} ms per token, {1000.0 * n / ms if ms else 0.0:8.2f} tokens per second)"


class Generator:
    """Prompt in, tokens out, on every rank in lockstep; rank 0 writes the text."""

    def __init__(self, rt: Runtime, tokenizer: Tokenizer, sampling: SamplingParams, timings: Timings) -> None:
        self.rt, self.tokenizer, self.timings = rt, tokenizer, timings
        self.sampler = Sampler(sampling, tokenizer.vocab_size, tokenizer.eog_ids)
        self.history: list[int] = []
        self.logits = None
        # The last token sampled and not yet decoded (a reply's end-of-turn token, or the last of
        # n_predict): the next turn's input starts with it.
        self.pending: int | None = None
        self.halted = False

    @property
    def n_past(self) -> int:
        return len(self.history)

    def feed(self, tokens: list[int]) -> None:
        if self.pending is not None:
            tokens, self.pending = [self.pending] + tokens, None
        if self.n_past + len(tokens) > self.rt.plan.n_ctx:
            raise LlamatpError(
                f"prompt is longer than the context ({self.n_past + len(tokens)} tokens > n_ctx "
                f"{self.rt.plan.n_ctx}); raise -c"
            )
        start = time.perf_counter()
        self.logits = self.rt.engine.forward(tokens, self.n_past)
        self.rt.engine.synchronize()
        self.timings.prompt_ms += (time.perf_counter() - start) * 1000
        self.timings.prompt_tokens += len(tokens)
        self.history += tokens

    def halt(self) -> None:
        """Make `tokens` stop after the token it has just yielded (kept pending, as at n_predict)."""
        self.halted = True

    def tokens(self, n_predict: int) -> Iterator[int]:
        """Sample until an end-of-generation token, n_predict tokens, a full context, or `halt`."""
        produced = 0
        while n_predict < 0 or produced < n_predict:
            start = time.perf_counter()
            token = self.sampler.sample(self.logits[-1], self.history)
            self.timings.sample_ms += (time.perf_counter() - start) * 1000
            self.timings.sample_runs += 1
            if self.tokenizer.is_eog(token):
                self.pending = token
                return
            yield token
            produced += 1
            if self.halted or produced == n_predict or self.n_past >= self.rt.plan.n_ctx:
                self.pending = token  # as llama.cpp does: decoded only once something follows it
                self.halted = False
                return
            start = time.perf_counter()
            self.logits = self.rt.engine.decode(token, self.n_past)
            self.rt.engine.synchronize()
            self.history.append(token)
            self.timings.eval_ms += (time.perf_counter() - start) * 1000
            self.timings.eval_runs += 1


class ReversePrompts:
    """-r: texts that halt generation once the generated text reaches one of them (the text is
    printed), as llama-cli's reverse prompts do; a reverse prompt that is one token also matches
    that token where its text is not printed (a special token). Every rank sees the same tokens,
    so every rank halts at the same one."""

    def __init__(self, prompts: tuple[str, ...], tokenizer: Tokenizer) -> None:
        self.prompts = prompts
        self.longest = max(map(len, prompts), default=0)
        encoded = [tokenizer.encode(p, add_special=False, parse_special=True) for p in prompts]
        self.single_tokens = {ids[0] for ids in encoded if len(ids) == 1}
        self.tail = ""  # enough of the text's end to hold a reverse prompt that the next piece completes

    def reached(self, token: int, piece: str) -> bool:
        """Whether the text generated so far, now ending in `piece` (token's text), reaches one."""
        if not self.prompts:
            return False
        self.tail = (self.tail + piece)[-(self.longest + len(piece)):]
        return token in self.single_tokens or any(p in self.tail for p in self.prompts)


def run_job(opts: RunOptions, info: WorkerInfo) -> None:
    started = time.perf_counter()
    rt = open_runtime(opts.model, info)
    tokenizer = Tokenizer.from_metadata(rt.gguf.metadata)
    if opts.warmup:
        warm_up(rt, tokenizer)
    timings = Timings(load_ms=(time.perf_counter() - started) * 1000)
    gen = Generator(rt, tokenizer, opts.sampling, timings)
    out = _Output(info.rank == 0)
    if opts.verbose and info.rank == 0:
        print(f"llamatp: split {rt.plan.mode} over {info.world} device(s), all-reduce: {rt.allreduce}", file=sys.stderr)
        for line in gen.sampler.describe():
            print(line, file=sys.stderr)
    if opts.conversation:
        _converse(opts, rt, tokenizer, gen, out)
    else:
        _complete(opts, tokenizer, gen, out)
    if info.rank == 0:
        print("", file=sys.stderr)
        for line in timings.lines():
            print(line, file=sys.stderr)


def warm_up(rt: Runtime, tokenizer: Tokenizer) -> None:
    """As llama.cpp does before a run (and counts in its load time): one pass over BOS and EOS and
    one decode step, so that the kernels of a short pass are compiled and first runs are over
    before anything is timed (the decode step's CUDA graph is captured at load either way). The
    positions they fill are written again by the prompt and the tokens after it before any step
    reads them."""
    tokens = [t for t in (tokenizer.bos_id, tokenizer.eos_id) if t is not None][: rt.plan.n_ctx - 1] or [0]
    rt.engine.forward(tokens, 0)
    if len(tokens) < rt.plan.n_ctx:
        rt.engine.decode(tokens[-1], len(tokens))
    rt.engine.synchronize()


def _complete(opts: RunOptions, tokenizer: Tokenizer, gen: Generator, out: "_Output") -> None:
    prompt = tokenizer.encode(opts.prompt, add_special=True, parse_special=True)
    if not prompt:
        raise LlamatpError("the prompt is empty and the model adds no BOS token; give -p or -f")
    if opts.verbose_prompt:
        out.describe_prompt(opts.prompt, prompt, tokenizer)
    gen.feed(prompt)
    decoder = StreamDecoder(tokenizer)
    if opts.display_prompt:
        out.text(opts.prompt)
    reverse = ReversePrompts(opts.reverse_prompts, tokenizer)
    for token in gen.tokens(opts.n_predict):
        piece = decoder.feed(token)
        out.text(piece)
        if reverse.reached(token, piece):
            gen.halt()
    out.text(decoder.flush())
    out.text("\n")


def _converse(opts: RunOptions, rt: Runtime, tokenizer: Tokenizer, gen: Generator, out: "_Output") -> None:
    template = opts.chat_template or rt.gguf.get("tokenizer.chat_template")
    session = ChatSession(
        template, bos_token=tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else "",
        eos_token=tokenizer.token_text(tokenizer.eos_id) if tokenizer.eos_id is not None else "",
        tokenizer_adds_bos=tokenizer.add_bos,
    )
    first = True
    text = session.add("system", opts.system_prompt) if opts.system_prompt else ""
    user = opts.prompt or None
    while True:
        while not user:  # an empty line adds no turn, as in llama.cpp
            user = rt.comm.broadcast_object(out.read_line() if rt.comm.is_first else None)
            if user is None:
                return
            user = process_escapes(user) if opts.escape else user
        text += session.add("user", user)
        gen.feed(tokenizer.encode(text, add_special=first, parse_special=True))
        first, text, user = False, "", None
        decoder, reply = StreamDecoder(tokenizer), []
        reverse = ReversePrompts(opts.reverse_prompts, tokenizer)  # a reverse prompt hands the turn back
        for token in gen.tokens(opts.n_predict):
            piece = decoder.feed(token)
            reply.append(piece)
            out.text(piece)
            if reverse.reached(token, piece):
                gen.halt()
        reply.append(decoder.flush())
        out.text(reply[-1] + "\n")
        session.add_reply("".join(reply))
        if opts.single_turn:
            return


class _Output:
    """stdout for rank 0; the other ranks stay silent."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def text(self, s: str) -> None:
        if self.active and s:
            sys.stdout.write(s)
            sys.stdout.flush()

    def read_line(self) -> str | None:
        if sys.stdin.isatty():
            sys.stdout.write("\n> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None

    def describe_prompt(self, text: str, tokens: list[int], tokenizer: Tokenizer) -> None:
        if not self.active:
            return
        print(f"\nmain: prompt: '{text}'", file=sys.stderr)
        print(f"main: number of tokens in prompt = {len(tokens)}", file=sys.stderr)
        print_token_pieces(tokens, tokenizer, sys.stderr)
        print("", file=sys.stderr)
