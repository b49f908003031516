"""Prefill and decode over the ranks of one run.

Every rank runs the same program and ends each step holding the same full logits, so
each rank can sample the same token with the same seeded sampler: no broadcast of the
sampled token is needed. Tensor split gathers the vocabulary slices; layer split passes
hidden states from stage to stage and the last stage broadcasts the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from llamatp.comm import Comm
from llamatp.graphs import PassGraphs, prompt_graphs_enabled
from llamatp.kernels import long_context_decode
from llamatp.kv_cache import KVCache
from llamatp.model import Transformer
from llamatp.plan import Plan


def pipeline_micro_batches(n_tokens: int, n_stages: int, dequantizes: bool) -> int:
    """How many micro-batches a layer-split pass of n_tokens is cut into, each of at least 32.

    With m micro-batches over s stages a pass takes m + s - 1 steps of one micro-batch.
    A micro-batch costs a stage its share of the matmuls, C / m, and where the stage's
    weights are dequantized for each pass, that too, D, whatever the micro-batch's size:
    the m that minimizes (m + s - 1)(D / C + 1 / m). D / C is about 350 / n_tokens (an H100
    dequantizes Q4_0 at about 2.5 TB/s and multiplies at about 700 TFLOP/s).
    """
    most = min(n_stages, max(1, n_tokens // 32))
    ratio = 350 / n_tokens if dequantizes else 0.0
    return min(range(1, most + 1), key=lambda m: (m + n_stages - 1) * (ratio + 1 / m))


class Engine:
    def __init__(self, model: Transformer, comm: Comm, plan: Plan, device: torch.device, dtype: torch.dtype,
                 use_graphs: bool = True, batch_threads: int = 0) -> None:
        """`batch_threads` (CPU workers, -tb): torch's threads while a prompt runs; 0: as for decode."""
        self.model, self.comm, self.plan = model, comm, plan
        self.batch_threads = batch_threads
        self.device, self.dtype = device, dtype
        self.n_ctx = plan.n_ctx
        self.vocab_widths = [len(s.vocab) for s in plan.shards]
        self.n_vocab = sum(self.vocab_widths) if plan.mode == "tensor" else len(plan.shards[0].vocab)
        self.use_graphs = use_graphs and device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        # From position _long_from on, steps replay _long_graph (kernels.long_context_decode).
        self._long_graph: torch.cuda.CUDAGraph | None = None
        self._long_from = self.n_ctx
        self._prompt_graphs = (PassGraphs(warn=comm.is_first) if self.use_graphs and prompt_graphs_enabled()
                               else None)
        # Captured now, before a prompt fills the cache that the capture's warm-up writes into.
        self._capture_decode()

    def set_context(self, n_ctx: int) -> None:
        """An empty KV cache of n_ctx positions in place of the current one, and on GPUs a
        decode graph captured for it: the decode kernels size their work to the cache."""
        self._graph = self._long_graph = None
        if self._prompt_graphs is not None:
            self._prompt_graphs.clear()
        spec = self.model.cache.spec
        del self.model.cache  # free the old cache (and the graph's hold on it) before the new one
        self.model.cache = KVCache(spec, n_ctx)
        self.n_ctx = n_ctx
        self._capture_decode()

    @property
    def n_prompt_graphs(self) -> int:
        """Prompt passes held as CUDA graphs."""
        return 0 if self._prompt_graphs is None else self._prompt_graphs.n_captured

    def synchronize(self) -> None:
        """Wait for the device's queued work, for timings read off the host clock."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def forward(self, tokens: list[int], start: int, all_logits: bool = False, repeated: bool = False) -> torch.Tensor:
        """Run tokens at positions start.. and return float32 logits, [len(tokens) or 1, n_vocab].

        `repeated`: the caller will run passes of this length at this start again (bench
        repetitions, perplexity chunks), so on GPUs they are captured as CUDA graphs."""
        outputs = []
        step = self.plan.n_ubatch
        with self._batch_threads():
            for i in range(0, len(tokens), step):
                chunk = tokens[i : i + step]
                wanted = all_logits or i + step >= len(tokens)
                logits = self._forward_chunk(chunk, start + i, last_only=not all_logits, repeated=repeated)
                if wanted:
                    outputs.append(logits)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    @contextmanager
    def _batch_threads(self) -> Iterator[None]:
        """torch's threads set to `batch_threads` (-tb), where given, while a prompt runs."""
        if not self.batch_threads:
            yield
            return
        decode_threads = torch.get_num_threads()
        torch.set_num_threads(self.batch_threads)
        try:
            yield
        finally:
            torch.set_num_threads(decode_threads)

    @torch.inference_mode()
    def decode(self, token: int, pos: int) -> torch.Tensor:
        """One token: through a captured CUDA graph where possible. Returns logits [1, n_vocab]."""
        if self._graph is None:
            return self._forward_chunk([token], pos, last_only=True, repeated=False)
        comm, layer_split = self.comm, self.plan.mode == "layer"
        if not layer_split or comm.is_first:
            self._input.fill_(token)
        else:
            torch.distributed.recv(self._input, comm.rank - 1)
        self._pos.fill_(pos)
        if pos >= self._long_from:
            self._long_graph.replay()
            output = self._long_output
        else:
            self._graph.replay()
            output = self._output
        if not layer_split:
            return output
        if not comm.is_last:
            torch.distributed.send(output, comm.rank + 1)
        return comm.broadcast(output if comm.is_last else self._logits, comm.world - 1)

    def _forward_chunk(self, chunk: list[int], start: int, last_only: bool, repeated: bool) -> torch.Tensor:
        tokens = torch.tensor(chunk, dtype=torch.long, device=self.device)
        if self.plan.mode == "layer":
            return self._pipeline(tokens, start, last_only, repeated)
        return self._run_pass(tokens, start, last_only, repeated)

    def _run_pass(self, inputs: torch.Tensor, start: int, last_only: bool, repeated: bool) -> torch.Tensor:
        """This rank's part of a pass over inputs (token ids or a stage's hidden states) at
        positions start..; as a CUDA graph where `repeated`."""

        def pass_fn(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            pos = torch.arange(start, start + n, device=self.device)
            return self._gather(self.model(x, pos, kv_len=start + n, last_only=last_only))

        if not repeated or self._prompt_graphs is None:
            return pass_fn(inputs)
        key = (tuple(inputs.shape), inputs.dtype, start, last_only)
        return self._prompt_graphs.run(key, pass_fn, inputs)

    def _gather(self, local_logits: torch.Tensor) -> torch.Tensor:
        if self.plan.mode != "tensor":
            return local_logits
        return self.comm.gather_columns(local_logits, self.vocab_widths)

    def _pipeline(self, tokens: torch.Tensor, start: int, last_only: bool, repeated: bool) -> torch.Tensor:
        """Layer split: cut the batch into micro-batches so that stages work at the same time."""
        comm, n = self.comm, tokens.shape[0]
        n_micro = pipeline_micro_batches(n, comm.world, self.model.dequantizes_prompt_weights)
        bounds = [round(n * k / n_micro) for k in range(n_micro + 1)]
        pending, logits = [], []
        for a, b in zip(bounds, bounds[1:]):
            if comm.is_first:
                x = tokens[a:b]
            else:
                x = comm.recv((b - a, self.model.config.n_embd), self.dtype, comm.rank - 1)
            out = self._run_pass(x, start + a, last_only, repeated)
            if comm.is_last:
                logits.append(out)
            else:
                pending.append(comm.send(out, comm.rank + 1))
        for work in pending:
            work.wait()
        rows = 1 if last_only else n
        result = torch.cat(logits[-1:] if last_only else logits) if comm.is_last else torch.empty(
            rows, self.n_vocab, dtype=torch.float32, device=self.device)
        return comm.broadcast(result, comm.world - 1)

    @torch.inference_mode()
    def _capture_decode(self) -> None:
        """Capture one decode step of this rank's part (under layer split, its stage alone:
        the hand-over to the next stage stays outside the graph)."""
        if not self.use_graphs:
            return
        first_stage = self.plan.mode != "layer" or self.comm.is_first
        if first_stage:
            self._input = torch.zeros(1, dtype=torch.long, device=self.device)
        else:
            self._input = torch.zeros(1, self.model.config.n_embd, dtype=self.dtype, device=self.device)
        self._pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self._logits = torch.zeros(1, self.n_vocab, dtype=torch.float32, device=self.device)

        def step() -> torch.Tensor:
            return self._gather(self.model(self._input, self._pos, kv_len=self.n_ctx, last_only=True))

        pool = torch.cuda.graph_pool_handle()  # one step's activations, whichever graph runs
        self._graph, self._output = self._capture_step(step, pool)
        long_from = self.model.long_context_from()
        if long_from is not None and long_from < self.n_ctx:
            with long_context_decode():
                self._long_graph, self._long_output = self._capture_step(step, pool)
            self._long_from = long_from
        else:
            self._long_from = self.n_ctx

    def _capture_step(self, step: Callable[[], torch.Tensor], pool: tuple[int, int]) -> tuple[
            torch.cuda.CUDAGraph, torch.Tensor]:
        """`step` warmed up on a side stream (kernels compiled and tuned, NCCL set up), then
        captured; returns the graph and the output it writes."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            output = step()
        return graph, output
