"""Where a tensor-split decode step joins its ranks: the all-reduce of a block's partial
output, the residual add and the RMSNorm after it, as one kernel over symmetric memory.

Each rank writes its partial row into its own slot of every rank's symmetric buffer (over
NVLink: writes do not wait for an answer, reads would), meets its peers at a barrier, then
reads every rank's row from its own buffer, in rank order so that every rank computes the same
sum, and finishes as `kernels.add_rms_norm` does. This replaces an all-reduce kernel with two
barriers and a norm kernel.

Every rank counts its calls on its GPU (the same count on every rank: they run the same
steps). The barrier is a symmetric array of flags, one per sender: a sender adds one to its
flag on every peer, all at once, and waits until each of its own flags has reached the
count, so nothing needs resetting between calls or graph replays. Calls alternate between two
halves of the buffers: a rank can only write into a half again after passing the next call's
barrier, that is after every peer has finished reading it. That holds because every kernel
between two calls, launched early or not, waits for the kernel before it to finish before it
touches memory (`gemv.wait_for_inputs`), and one stream runs the calls. Rows beyond one
(prompt passes) take the all-reduce and the norm kernel separately.
"""

from __future__ import annotations

import torch
import torch.distributed._symmetric_memory as symm_mem
import triton
import triton.language as tl

from llamatp.kernels import store_rounded
from llamatp.quant.gemv import QuantizedRows, early_launch_args, wait_for_inputs


class ReduceAddNorm:
    """norm(sum over ranks of x + residual) * weight, and x summed plus residual, for one row of `width`."""

    def __init__(self, width: int, dtype: torch.dtype, device: torch.device, group_name: str, world: int) -> None:
        if width % 32:
            raise ValueError(f"rows of {width} values: the kernel takes whole blocks of 32")
        self.width, self.dtype = width, dtype
        self.buffer = symm_mem.empty(2 * world * width, dtype=dtype, device=device)  # [call & 1, rank, width]
        self.handle = symm_mem.rendezvous(self.buffer, group_name)
        if self.handle.world_size != world:
            raise RuntimeError(f"the group has {self.handle.world_size} ranks, not {world}")
        self.flags = symm_mem.empty(self.handle.world_size, dtype=torch.int32, device=device).zero_()
        torch.cuda.synchronize(device)  # zeroed before the rendezvous, which every rank must reach first
        self.flag_handle = symm_mem.rendezvous(self.flags, group_name)
        for symmetric, handle in ((self.buffer, self.handle), (self.flags, self.flag_handle)):
            if handle.buffer_ptrs[handle.rank] != symmetric.data_ptr():
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
            self.flag_handle.buffer_ptrs_dev, self.counter, self.width, eps, self.handle.rank,
            WORLD=self.handle.world_size, HAS_RESIDUAL=residual is not None, ROUND=rounded is not None, BLOCK=block,
            num_warps=min(16, max(4, block // 256)), **early_launch_args(x.device),
        )
        return out, total


@triton.jit
def _reduce_add_rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, total_ptr, words_ptr, meta_ptr, buffers_ptr, flags_ptr,
                                counter_ptr, width, eps, rank, WORLD: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
                                ROUND: tl.constexpr, BLOCK: tl.constexpr, EARLY: tl.constexpr):
    wait_for_inputs(EARLY)
    cols = tl.arange(0, BLOCK)
    mask = cols < width
    call = tl.load(counter_ptr)
    half = tl.multiple_of((call & 1) * WORLD * width, 16)  # width is a multiple of 32; call may wrap to negative
    buffers = buffers_ptr.to(tl.pointer_type(tl.uint64))
    x = tl.load(x_ptr + cols, mask=mask)
    for r in tl.static_range(WORLD):
        theirs = tl.multiple_of(tl.load(buffers + r).to(tl.pointer_type(x_ptr.dtype.element_ty)), 16)
        tl.store(theirs + half + rank * width + cols, x, mask=mask)
    _barrier(flags_ptr, rank, call + 1, WORLD)
    mine = tl.multiple_of(tl.load(buffers + rank).to(tl.pointer_type(x_ptr.dtype.element_ty)), 16)
    s = tl.zeros([BLOCK], tl.float32)
    for r in tl.static_range(WORLD):
        # volatile: rank r's row at this address changed since an earlier call may have cached it
        s += tl.load(mine + half + r * width + cols, mask=mask, other=0.0, volatile=True).to(tl.float32)
    # Rounded to the activation type as a separate all-reduce's output is, then added.
    s = s.to(x_ptr.dtype.element_ty)
    if HAS_RESIDUAL:
        s += tl.load(res_ptr + cols, mask=mask, other=0.0)
    tl.store(total_ptr + cols, s, mask=mask)
    s32 = s.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(s32 * s32, axis=0) / width + eps)
    out = (s32 * rstd * tl.load(w_ptr + cols, mask=mask, other=0.0)).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + cols, out, mask=mask)
    if ROUND:
        store_rounded(words_ptr, meta_ptr, out, 0, 0, width // 32)
    tl.store(counter_ptr, call + 1)


@triton.jit
def _barrier(flags_ptr, rank, count, WORLD: tl.constexpr):
    """Every rank's writes before the barrier are visible to every rank after it: each rank
    adds one to its flag on every peer (release) and waits until each of its own flags has
    reached `count` (acquire), one thread per peer."""
    tl.debug_barrier()
    peers = tl.arange(0, triton.next_power_of_2(WORLD))
    is_peer = peers < WORLD
    flags = flags_ptr.to(tl.pointer_type(tl.uint64))
    theirs = tl.load(flags + peers, mask=is_peer, other=0).to(tl.pointer_type(tl.int32))
    tl.atomic_add(theirs + rank, 1, mask=is_peer, sem="release", scope="sys")
    own = tl.load(flags + rank).to(tl.pointer_type(tl.int32)) + peers
    while _least_ahead(own, is_peer, count) < 0:
        pass
    tl.debug_barrier()


@triton.jit
def _least_ahead(own, is_peer, count):
    """How far the slowest peer's count is past `count` (counts wrap around, and a peer may
    already be a call ahead, so the difference is taken as signed)."""
    arrived = tl.atomic_add(own, 0, mask=is_peer, sem="acquire", scope="sys")
    return tl.min(tl.where(is_peer, arrived - count, 0), axis=0)
