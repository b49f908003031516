"""CUDA graphs of prompt passes whose shape repeats: bench repetitions, perplexity chunks.

A prompt pass on a GPU launches a few hundred kernels and, under tensor split, dozens of
all-reduces; from Python that takes longer than the GPUs take to run them once several
GPUs share the work, and the GPUs wait on the host. A captured graph launches them all at
once. Capture costs about one more pass of host time and holds the pass's activations, so
only passes a caller will repeat are captured: on their first run, right after it.

LLAMATP_PROMPT_GRAPHS=0 turns this off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch


def prompt_graphs_enabled() -> bool:
    return os.environ.get("LLAMATP_PROMPT_GRAPHS", "1") != "0"


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # the graph reads its input here
    output: torch.Tensor  # and writes its output here


class PassGraphs:
    """Captured passes by key (what fixes the pass's shapes and positions), up to `capacity`;
    once full, further passes run as they are (dropping graphs to make room would have a cycle
    of more keys, as a long perplexity context makes, capture every pass anew). All share one
    memory pool, so together they hold about one pass's activations and their outputs: a
    replay overwrites what another graph left there, and `run` returns a copy of the output.
    A pass that cannot be captured runs as it is; the first such pass is told on stderr where
    `warn` is set (one rank of several says it)."""

    def __init__(self, capacity: int = 4, warn: bool = True) -> None:
        self.capacity, self.warn = capacity, warn
        self._warned = False
        self._graphs: dict[Hashable, _Captured | None] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def run(self, key: Hashable, pass_fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """pass_fn(inputs): replayed if captured under `key`, else run and, while there is room, captured."""
        if key not in self._graphs:
            output = pass_fn(inputs)  # also the warm-up: kernels compiled, libraries set up
            if len(self._graphs) < self.capacity:
                self._capture(key, pass_fn, inputs)
            return output
        captured = self._graphs[key]
        if captured is None:
            return pass_fn(inputs)
        captured.inputs.copy_(inputs)
        captured.graph.replay()
        return captured.output.clone()

    @property
    def n_captured(self) -> int:
        return sum(captured is not None for captured in self._graphs.values())

    def clear(self) -> None:
        """Drop every graph (they point into buffers, such as a KV cache, about to be freed).
        Later graphs go to a new pool: PyTorch 2.11 fails every capture into a pool whose graphs
        are all gone while memory taken during their capture is still held ("use_count > 0
        INTERNAL ASSERT FAILED"), and every pass after a new context would run uncaptured."""
        self._graphs.clear()
        self._pool = torch.cuda.graph_pool_handle()

    def _capture(self, key: Hashable, pass_fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> None:
        static_inputs = inputs.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                output = pass_fn(static_inputs)
            self._graphs[key] = _Captured(graph, static_inputs, output)
        except RuntimeError as e:  # an operation that cannot be captured on this GPU or library version
            if self.warn and not self._warned:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                print(f"warning: a prompt pass runs without a CUDA graph, slower: {reason}", file=sys.stderr)
                self._warned = True
            self._graphs[key] = None
