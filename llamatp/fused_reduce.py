"""Where a tensor-split decode step joins its ranks: the all-reduce of a block's partial
output, the residual add and the RMSNorm after it, as one kernel over symmetric memory.

Each rank writes its partial row into its own slot of every rank's symmetric buffer (over
NVLink: writes do not wait for an answer, reads would), then reads every rank's row from its
own buffer, in rank order so that every rank computes the same sum, and finishes as
`kernels.add_rms_norm` does. This replaces an all-reduce kernel with two barriers and a norm
kernel.

There is no barrier: every 8-byte word of a slot holds two 16-bit values beside the number of
the call that wrote them (the flags of NCCL's LL protocol), written in one store, and a reader
waits on each word until its number is the call's. So a call costs one NVLink crossing, not a
crossing, a fence that waits for the writes to land and a signal after them.

Every rank counts its calls on its GPU (the same count on every rank: they run the same
steps); the words carry count + 1, so a buffer needs no resetting between calls or graph
replays. Calls alternate between two halves of the buffers: a rank writes a half again two
calls later, after it has read every peer's row of the call between, which each peer wrote
only after it had read the half. That holds because every kernel between two calls, launched
early or not, waits for the kernel before it to finish before it touches memory
(`gemv.wait_for_inputs`), and one stream runs the calls. Rows beyond one (prompt passes) take
the all-reduce and the norm kernel separately.
"""

from __future__ import annotations

import torch
import torch.distributed._symmetric_memory as symm_mem
import triton
import triton.language as tl

from llamatp.kernels import store_rounded
from llamatp.quant.gemv import QuantizedRows, early_launch_args, interpreted, wait_for_inputs


class ReduceAddNorm:
    """norm(sum over ranks of x + residual) * weight, and x summed plus residual, for one row of `width`."""

    def __init__(self, width: int, dtype: torch.dtype, device: torch.device, group_name: str, world: int) -> None:
        if width % 32:
            raise ValueError(f"rows of {width} values: the kernel takes whole blocks of 32")
        if dtype.itemsize != 2:
            raise ValueError(f"rows of {dtype}: the kernel packs two 16-bit values beside each flag")
        self.width, self.dtype = width, dtype
        # [call & 1, rank, width / 2] words: two values, then the number of the call that wrote them
        self.buffer = symm_mem.empty(2 * world * width // 2, dtype=torch.int64, device=device).zero_()
        torch.cuda.synchronize(device)  # zeroed before the rendezvous, which every rank must reach first
        self.handle = symm_mem.rendezvous(self.buffer, group_name)
        if self.handle.world_size != world:
            raise RuntimeError(f"the group has {self.handle.world_size} ranks, not {world}")
        if self.handle.buffer_ptrs[self.handle.rank] != self.buffer.data_ptr():
            raise RuntimeError("a symmetric buffer does not start its allocation")
        self.counter = torch.zeros(1, dtype=torch.int32, device=device)

    def applies(self, x: torch.Tensor, residual: torch.Tensor | None) -> bool:
        """One dense row of this width and type, and a residual like it (or none)."""
        return (x.is_cuda and x.shape == (1, self.width) and x.dtype == self.dtype and x.is_contiguous()
                and (residual is None or (residual.shape == x.shape and residual.dtype == x.dtype
                                          and residual.is_contiguous())))

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                 rounded: QuantizedRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, total = torch.empty_like(x), torch.empty_like(x)
        words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
        block = triton.next_power_of_2(self.width)
        _reduce_add_rms_norm_kernel[(1,)](
            x, x if residual is None else residual, weight, out, total, words, meta, self.handle.buffer_ptrs_dev,
            self.counter, self.width, eps, self.handle.rank, WORLD=self.handle.world_size,
            HAS_RESIDUAL=residual is not None, ROUND=rounded is not None, BLOCK=block, EMULATE=interpreted(),
            num_warps=min(16, max(4, block // 256)), **early_launch_args(x.device),
        )
        return out, total


@triton.jit
def _reduce_add_rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, total_ptr, words_ptr, meta_ptr, buffers_ptr,
                                counter_ptr, width, eps, rank, WORLD: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                                ROUND: tl.constexpr, BLOCK: tl.constexpr, EMULATE: tl.constexpr,
                                EARLY: tl.constexpr):
    wait_for_inputs(EARLY)
    HALF: tl.constexpr = BLOCK // 2
    pairs = tl.arange(0, HALF)
    n_pairs = width // 2
    valid = pairs < n_pairs
    call = tl.load(counter_ptr)
    number = call + 1  # what this call's words carry (int32: wraps as the counter does)
    half = tl.multiple_of((call & 1) * WORLD * n_pairs, 16)  # n_pairs is a multiple of 16
    buffers = buffers_ptr.to(tl.pointer_type(tl.uint64))
    mine = tl.load(x_ptr.to(tl.pointer_type(tl.int32)) + pairs, mask=valid, other=0)
    word = (number.to(tl.int64) << 32) | (mine.to(tl.int64) & 0xFFFFFFFF)
    for r in tl.static_range(WORLD):
        theirs = tl.multiple_of(tl.load(buffers + r).to(tl.pointer_type(tl.int64)), 16)
        tl.store(theirs + half + rank * n_pairs + pairs, word, mask=valid)
    own = tl.multiple_of(tl.load(buffers + rank).to(tl.pointer_type(tl.int64)), 16)
    low = tl.zeros([HALF], tl.float32)
    high = tl.zeros([HALF], tl.float32)
    for r in tl.static_range(WORLD):
        if r == rank:
            values = mine
        else:
            values = _wait_for_words(own + half + r * n_pairs, pairs, valid, number, EMULATE)
        low += _low_half(values, x_ptr.dtype.element_ty)
        high += _low_half(values >> 16, x_ptr.dtype.element_ty)
    # Rounded to the activation type as a separate all-reduce's output is, then added.
    s32 = tl.reshape(tl.join(low, high), [BLOCK]).to(x_ptr.dtype.element_ty).to(tl.float32)
    cols = tl.arange(0, BLOCK)
    mask = cols < width
    if HAS_RESIDUAL:
        s32 = (s32 + tl.load(res_ptr + cols, mask=mask, other=0.0).to(tl.float32)).to(x_ptr.dtype.element_ty)
        s32 = s32.to(tl.float32)
    tl.store(total_ptr + cols, s32.to(x_ptr.dtype.element_ty), mask=mask)
    rstd = tl.rsqrt(tl.sum(s32 * s32, axis=0) / width + eps)
    out = (s32 * rstd * tl.load(w_ptr + cols, mask=mask, other=0.0)).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + cols, out, mask=mask)
    if ROUND:
        store_rounded(words_ptr, meta_ptr, out, 0, 0, width // 32)
    tl.store(counter_ptr, call + 1)


@triton.jit
def _low_half(values, DTYPE: tl.constexpr):
    """The 16-bit value of DTYPE in the low half of each int32, as float32."""
    return (values & 0xFFFF).to(tl.int16).to(DTYPE, bitcast=True).to(tl.float32)


@triton.jit
def _wait_for_words(slot, pairs, valid, number, EMULATE: tl.constexpr):
    """The two values of each word `pairs` of a slot (as an int32), once the word carries `number`."""
    if EMULATE:  # Triton's interpreter runs no PTX: the whole row, until all of it has come
        words = tl.load(slot + pairs, mask=valid, other=0, volatile=True)
        while tl.min(tl.where(valid, (words >> 32).to(tl.int32) == number, True).to(tl.int32), axis=0) == 0:
            words = tl.load(slot + pairs, mask=valid, other=0, volatile=True)
        return words.to(tl.int32)
    else:  # each thread waits for its own words (past the row: for the first, which will come too);
        # one 8-byte load reads a word's values and number at once
        return tl.inline_asm_elementwise(
            """{
            .reg .pred waiting;
            .reg .b32 number;
            WAIT:
            ld.volatile.global.v2.b32 {$0, number}, [$1];
            setp.ne.b32 waiting, number, $2;
            @waiting bra WAIT;
            }""",
            "=r,l,r", [slot + tl.where(valid, pairs, 0), tl.full(pairs.shape, 0, tl.int32) + number],
            dtype=tl.int32, is_pure=False, pack=1)
