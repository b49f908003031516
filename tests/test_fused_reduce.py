"""The kernel that joins tensor-split ranks at decode (all-reduce, residual add, RMSNorm), run
as rank 0 of two in Triton's interpreter on host memory; rank 1's side of each call is written
as rank 1's kernel would write it: its row in its slot of both ranks' buffers, its signal in
the flags. A buffer holds [call & 1, rank, WIDTH] values."""

import os
import threading
import time

import pytest
import torch

from llamatp import kernels

pytestmark = pytest.mark.skipif(kernels.triton is None or os.environ.get("TRITON_INTERPRET") != "1",
                                reason="needs triton's interpreter (tests/conftest.py turns it on)")

WIDTH = 64


class TwoRanks:
    """Rank 0's buffers, flags and call counter, and rank 1's, at host addresses."""

    def __init__(self) -> None:
        self.buffers = [torch.full((2 * 2 * WIDTH,), float("nan")) for _ in range(2)]
        self.flags = [torch.zeros(2, dtype=torch.int32) for _ in range(2)]
        self.buffer_ptrs = torch.tensor([b.data_ptr() for b in self.buffers], dtype=torch.int64)
        self.flag_ptrs = torch.tensor([f.data_ptr() for f in self.flags], dtype=torch.int64)
        self.counter = torch.zeros(1, dtype=torch.int32)

    def slot(self, buffer_of: int, call: int, row_of: int) -> torch.Tensor:
        """Where rank `row_of` writes its row of `call` in rank `buffer_of`'s buffer."""
        return self.buffers[buffer_of].view(2, 2, WIDTH)[call % 2, row_of]

    def rank1_arrives(self, call: int, row: torch.Tensor) -> None:
        """What rank 1's kernel does before its barrier: its row into its slot of every buffer,
        one more on its flag everywhere."""
        for buffer_of in range(2):
            self.slot(buffer_of, call, 1).copy_(row[0])
        for flags in self.flags:
            flags[1] = int32(int(flags[1]) + 1)

    def start_after(self, calls: int) -> None:
        """As if both ranks had already made `calls` calls (counted in int32, as on the GPU)."""
        self.counter.fill_(int32(calls))
        for flags in self.flags:
            flags.fill_(int32(calls))

    def rank0_joins(self, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                    rounded: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        from llamatp.fused_reduce import _reduce_add_rms_norm_kernel

        out, total = torch.empty_like(x), torch.empty_like(x)
        words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
        _reduce_add_rms_norm_kernel[(1,)](
            x, x if residual is None else residual, weight, out, total, words, meta, self.buffer_ptrs.data_ptr(),
            self.flag_ptrs.data_ptr(), self.counter, WIDTH, 1e-6, 0, WORLD=2, HAS_RESIDUAL=residual is not None,
            ROUND=rounded is not None, BLOCK=WIDTH, EARLY=False)
        return out, total


def int32(n: int) -> int:
    return (n + 2**31) % 2**32 - 2**31


def rows(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, WIDTH, generator=g), torch.randn(1, WIDTH, generator=g), torch.randn(1, WIDTH, generator=g),
            torch.rand(WIDTH, generator=g) + 0.5)


def assert_joined(out: torch.Tensor, total: torch.Tensor, mine: torch.Tensor, theirs: torch.Tensor,
                  residual: torch.Tensor | None, weight: torch.Tensor) -> None:
    """Rank 0's results: the residual stream (both ranks' rows plus the residual) and its norm."""
    ref_out, ref_total = kernels.add_rms_norm_torch(mine + theirs, residual, weight, 1e-6)
    torch.testing.assert_close(total, ref_total)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)


def test_each_call_normalizes_the_sum_over_ranks_plus_the_residual() -> None:
    ranks = TwoRanks()
    for call in range(3):
        mine, theirs, residual, weight = rows(call)
        ranks.rank1_arrives(call, theirs)
        assert_joined(*ranks.rank0_joins(mine, residual, weight), mine, theirs, residual, weight)


def test_without_a_residual_a_call_normalizes_the_sum_over_ranks_alone() -> None:
    """As the first norm does with the ranks' slices of an embedding."""
    ranks = TwoRanks()
    mine, theirs, _, weight = rows(7)
    ranks.rank1_arrives(0, theirs)
    assert_joined(*ranks.rank0_joins(mine, None, weight), mine, theirs, None, weight)


def test_each_rank_writes_its_row_into_every_buffer_alternating_halves_and_counts_on_the_gpu() -> None:
    ranks = TwoRanks()
    written = []
    for call in range(4):
        mine, theirs, residual, weight = rows(10 + call)
        ranks.rank1_arrives(call, theirs)
        ranks.rank0_joins(mine, residual, weight)
        written.append(mine)
        assert int(ranks.counter) == call + 1
        # rank 0 added one to its flag on both ranks, rank 1 to its own
        assert ranks.flags[0].tolist() == [call + 1, call + 1] and ranks.flags[1].tolist() == [call + 1, call + 1]
        for buffer_of in range(2):
            torch.testing.assert_close(ranks.slot(buffer_of, call, 0), mine[0])
    torch.testing.assert_close(ranks.slot(1, 0, 0), written[2][0])  # call 2 came back to the first half


def test_a_peer_already_a_call_ahead_is_read_from_the_right_slot() -> None:
    ranks = TwoRanks()
    calls = [rows(40 + call) for call in range(2)]
    for call, (_, theirs, _, _) in enumerate(calls):
        ranks.rank1_arrives(call, theirs)
    for mine, theirs, residual, weight in calls:
        assert_joined(*ranks.rank0_joins(mine, residual, weight), mine, theirs, residual, weight)


def test_the_call_count_wraps_around_without_missing_a_slot_or_a_signal() -> None:
    ranks = TwoRanks()
    first = 2**31 - 1
    ranks.start_after(first)
    for call in range(first, first + 3):  # odd, then even and odd past the wrap
        mine, theirs, residual, weight = rows(50 + call - first)
        ranks.rank1_arrives(call, theirs)
        assert_joined(*ranks.rank0_joins(mine, residual, weight), mine, theirs, residual, weight)
        torch.testing.assert_close(ranks.slot(1, call, 0), mine[0])
    assert int(ranks.counter) == int32(first + 3)


def test_rank_0_waits_at_the_barrier_until_its_peer_has_signalled() -> None:
    ranks = TwoRanks()
    mine, theirs, residual, weight = rows(20)
    result: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    worker = threading.Thread(target=lambda: result.update(joined=ranks.rank0_joins(mine, residual, weight)),
                              daemon=True)
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive() and int(ranks.counter) == 0
    ranks.slot(0, 0, 1).copy_(theirs[0])
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        # rank 1's signal, set again should the interpreter's read-add-write of the flag overwrite it
        ranks.flags[0][1] = 1
        worker.join(timeout=0.05)
    assert not worker.is_alive()
    assert_joined(*result["joined"], mine, theirs, residual, weight)


def test_the_norm_is_rounded_for_the_next_gemv_as_the_separate_kernel_rounds_it() -> None:
    from llamatp.quant.gemv import QuantizedRows, quantize_rows

    ranks = TwoRanks()
    mine, theirs, residual, weight = rows(30)
    ranks.rank1_arrives(0, theirs)
    rounded = QuantizedRows.empty(1, WIDTH, mine.device)
    out, _ = ranks.rank0_joins(mine, residual, weight, rounded)
    expected = quantize_rows(out)
    assert torch.equal(rounded.words, expected.words) and torch.equal(rounded.meta, expected.meta)
