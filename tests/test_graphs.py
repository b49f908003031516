"""Which prompt passes become CUDA graphs (`llamatp.graphs.PassGraphs`), with the CUDA calls
stood in for so the policy can be checked without a GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from llamatp import graphs


class FakeGraph:
    replays = 0

    def replay(self) -> None:
        FakeGraph.replays += 1


POOLS_CAPTURED_INTO: list[object] = []


@pytest.fixture(autouse=True)
def no_gpu_needed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    @contextlib.contextmanager
    def capture(graph: FakeGraph, pool: object = None) -> Iterator[None]:
        POOLS_CAPTURED_INTO.append(pool)
        yield

    FakeGraph.replays = 0
    POOLS_CAPTURED_INTO.clear()
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    yield


def counting_pass() -> tuple[list[int], object]:
    calls: list[int] = []

    def pass_fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x * 2

    return calls, pass_fn


def test_a_pass_is_run_captured_after_its_first_run_and_replayed_after_that() -> None:
    cache, (calls, pass_fn) = graphs.PassGraphs(capacity=4), counting_pass()
    x = torch.ones(3)
    first = cache.run("a", pass_fn, x)
    assert torch.equal(first, x * 2) and len(calls) == 2  # the run, then the capture
    cache.run("a", pass_fn, x)
    cache.run("a", pass_fn, x)
    assert len(calls) == 2 and FakeGraph.replays == 2 and cache.n_captured == 1


def test_once_full_new_passes_run_uncaptured_and_the_held_graphs_stay() -> None:
    cache, (calls, pass_fn) = graphs.PassGraphs(capacity=2), counting_pass()
    x = torch.ones(3)
    for _ in range(3):  # a cycle of three keys, one more than there is room for
        for key in ("a", "b", "c"):
            cache.run(key, pass_fn, x)
    assert cache.n_captured == 2
    assert FakeGraph.replays == 4  # a and b, twice each
    assert len(calls) == 2 * 2 + 3  # a and b run and captured once; c runs every time


def test_a_pass_that_cannot_be_captured_runs_as_it_is() -> None:
    cache, attempts = graphs.PassGraphs(), []

    def uncapturable(x: torch.Tensor) -> torch.Tensor:
        attempts.append(1)
        if len(attempts) == 2:  # the capture
            raise RuntimeError("operation not permitted when stream is capturing")
        return x + 1

    x = torch.zeros(2)
    assert torch.equal(cache.run("k", uncapturable, x), x + 1)
    assert torch.equal(cache.run("k", uncapturable, x), x + 1)
    assert cache.n_captured == 0 and FakeGraph.replays == 0


def test_the_first_pass_that_cannot_be_captured_says_so_once_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    def uncapturable(x: torch.Tensor) -> torch.Tensor:
        if POOLS_CAPTURED_INTO:
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
        return x

    cache = graphs.PassGraphs()
    cache.run("a", uncapturable, torch.zeros(1))
    POOLS_CAPTURED_INTO.clear()
    cache.run("b", uncapturable, torch.zeros(1))
    err = capsys.readouterr().err
    assert err == ("warning: a prompt pass runs without a CUDA graph, slower: "
                   "operation not permitted when stream is capturing\n")


def test_a_rank_told_not_to_warn_stays_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    def uncapturable(x: torch.Tensor) -> torch.Tensor:
        if POOLS_CAPTURED_INTO:
            raise RuntimeError("operation not permitted when stream is capturing")
        return x

    graphs.PassGraphs(warn=False).run("a", uncapturable, torch.zeros(1))
    assert capsys.readouterr().err == ""


def test_clearing_drops_every_graph() -> None:
    cache, (_, pass_fn) = graphs.PassGraphs(), counting_pass()
    cache.run("a", pass_fn, torch.ones(1))
    cache.clear()
    assert cache.n_captured == 0


def test_graphs_captured_after_clearing_go_to_a_new_pool() -> None:
    # PyTorch 2.11 cannot capture into a pool whose graphs are all gone.
    cache, (_, pass_fn) = graphs.PassGraphs(), counting_pass()
    cache.run("a", pass_fn, torch.ones(1))
    cache.run("b", pass_fn, torch.ones(1))
    cache.clear()
    cache.run("a", pass_fn, torch.ones(1))
    before, also_before, after = POOLS_CAPTURED_INTO
    assert before is also_before and after is not before
    assert cache.n_captured == 1
