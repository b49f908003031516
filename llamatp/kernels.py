"""Fused element-wise kernels for the GPU decode path, with plain-torch twins.

A decode step at batch 1 is a chain of tiny operations; in a CUDA graph each kernel
still costs a couple of microseconds, so a layer of ~45 unfused kernels spends more time
launching than computing. These fuse the chains into one kernel each:
- `add_rms_norm`: residual add + RMSNorm (the norm alone when there is no residual),
- `rope_store_kv`: RoPE on q and k (the angles computed in the kernel from the positions),
  and the write of k and v into the cache (rounded to q8_0 or q4_0 where the cache holds that),
- `gated_act`: SiLU or GELU(tanh) of the gate times the up projection.
The torch versions run on CPU and define what the kernels must compute. The norm, the
activation and the attention merge feed GEMVs: given a `QuantizedRows` (`rounded`), they
also write their output rounded as the GEMV reads it, which saves the GEMV a kernel of its
own. On Hopper every kernel here starts before the one before it ends (`gemv.early_launch_args`)
and waits for it (EARLY) before it touches memory: the launches overlap the kernels.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl

    from llamatp.quant.gemv import (
        QuantizedRows, early_launch_args, interpreted, let_next_launch_then_wait, max_shared_memory,
        memory_bandwidth, round_q8_blocks, sm_count, store_rounded_blocks, wait_for_inputs,
    )
except ImportError:  # CPU-only installs run the torch versions
    triton = None
try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # Triton before 3.4 has no host-side TMA descriptors
    TensorDescriptor = None

from llamatp.errors import LlamatpError
from llamatp.kv_cache import CacheTensor


def use_triton(x: torch.Tensor) -> bool:
    return triton is not None and x.is_cuda


# --- residual add + RMSNorm ------------------------------------------------------------


def add_rms_norm_torch(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    s = x if residual is None else x + residual
    return F.rms_norm(s.float(), (s.shape[-1],), weight, eps).to(x.dtype), s


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                 rounded: QuantizedRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(norm(x + residual) * weight, x + residual); rows are the last dimension. `rounded`
    (GPU only) receives the first, rounded for a GEMV."""
    if use_triton(x):
        return add_rms_norm_triton(x, residual, weight, eps, rounded)
    return add_rms_norm_torch(x, residual, weight, eps)


def add_rms_norm_triton(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                        rounded: QuantizedRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    shape, width = x.shape, x.shape[-1]
    x2 = x.reshape(-1, width)
    out = torch.empty_like(x2)
    total = torch.empty_like(x2) if residual is not None else x2
    res2 = residual.reshape(-1, width) if residual is not None else x2
    block = max(32, triton.next_power_of_2(width))
    words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
    _add_rms_norm_kernel[(x2.shape[0],)](
        x2, res2, weight, out, total, words, meta, width, eps,
        HAS_RESIDUAL=residual is not None, ROUND=rounded is not None, BLOCK=block,
        num_warps=min(16, max(1, block // 256)), **early_launch_args(x.device),
    )
    return out.reshape(shape), total.reshape(shape)


if triton is not None:

    @triton.jit
    def _add_rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, total_ptr, words_ptr, meta_ptr, width, eps,
                             HAS_RESIDUAL: tl.constexpr, ROUND: tl.constexpr, EARLY: tl.constexpr,
                             BLOCK: tl.constexpr):
        wait_for_inputs(EARLY)
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < width
        s = tl.load(x_ptr + row * width + cols, mask=mask, other=0.0)
        if HAS_RESIDUAL:
            s = s + tl.load(res_ptr + row * width + cols, mask=mask, other=0.0)
            tl.store(total_ptr + row * width + cols, s, mask=mask)
        s32 = s.to(tl.float32)
        rstd = tl.rsqrt(tl.sum(s32 * s32, axis=0) / width + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0)
        out = (s32 * rstd * w).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + row * width + cols, out, mask=mask)
        if ROUND:
            store_rounded(words_ptr, meta_ptr, out, row * (width // 32), 0, width // 32)


    @triton.jit
    def store_rounded(words_ptr, meta_ptr, values, first_block, block_start, n_blocks):
        """Round `values` (a run of whole blocks of 32, from block `block_start` of a row whose
        blocks start at `first_block`) for a GEMV, leaving out blocks past `n_blocks`."""
        BLOCKS: tl.constexpr = values.shape[0] // 32
        blocks = block_start + tl.arange(0, BLOCKS)
        x = tl.reshape(values.to(tl.float32), [BLOCKS, 32])
        store_rounded_blocks(words_ptr, meta_ptr, first_block + blocks, x, blocks < n_blocks)


# --- RoPE + KV cache write -------------------------------------------------------------


def rope_angles(pos: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's angles, [T, head_dim / 2], float32."""
    angles = pos.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def rope_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool) -> torch.Tensor:
    """x: [T, heads, head_dim]; cos, sin: [T, head_dim / 2]."""
    x32, cos, sin = x.float(), cos[:, None, :], sin[:, None, :]
    if neox:
        x1, x2 = x32.chunk(2, dim=-1)
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    else:  # adjacent pairs rotate as complex numbers: fewer operations on the CPU
        pairs = torch.view_as_complex(x32.unflatten(-1, (-1, 2)).contiguous())
        out = torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2)
    return out.to(x.dtype)


def rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, neox: bool,
                  k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotate q and k by the angles pos * inv_freq; store k and v at `pos` in the caches
    (rounded to q8_0 or q4_0 where they hold that).

    q: [T, q_heads, head_dim]; k, v: [T, kv_heads, head_dim]; inv_freq: [head_dim / 2] float32.
    Returns the rotated q.
    """
    fn = rope_store_kv_triton if use_triton(q) else rope_store_kv_torch
    return fn(q, k, v, inv_freq, neox, k_cache, v_cache, pos)


def rope_store_kv_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, neox: bool,
                        k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor) -> torch.Tensor:
    cos, sin = rope_angles(pos, inv_freq)
    q, k = rope_torch(q, cos, sin, neox), rope_torch(k, cos, sin, neox)
    k_cache.store(pos, k)
    v_cache.store(pos, v)
    return q


def rope_store_kv_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, neox: bool,
                         k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor) -> torch.Tensor:
    T, n_q, hd = q.shape
    n_kv = k.shape[1]
    q_out = torch.empty_like(q)
    _rope_store_kernel[(T, n_q + n_kv)](
        q, k, v, inv_freq, q_out, *_cache_args(k_cache), *_cache_args(v_cache), pos,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        *_cache_strides(k_cache), *_cache_strides(v_cache), n_q, HALF=hd // 2, NEOX=neox,
        K_CODES=_codes(k_cache), V_CODES=_codes(v_cache), NEXT_FIRST=attention_during_gemv(),
        **early_launch_args(q.device),
    )
    return q_out


def _cache_args(cache: CacheTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A cache's codes or values and its scales (the values again where it has none)."""
    return cache.data, cache.scale if cache.scale is not None else cache.data


def _cache_strides(cache: CacheTensor) -> tuple[int, int, int, int]:
    """Strides of heads and positions in values (bytes, for codes) and in scales."""
    scale = cache.scale if cache.scale is not None else cache.data
    return cache.data.stride(0), cache.data.stride(1), scale.stride(0), scale.stride(1)


def _codes(cache: CacheTensor) -> str:
    """What a kernel reads or writes: "float" values, or "q8_0" or "q4_0" codes."""
    return "float" if cache.scale is None else cache.type


if triton is not None:

    @triton.jit
    def _rope_store_kernel(q_ptr, k_ptr, v_ptr, inv_freq_ptr, q_out_ptr, kc_ptr, ks_ptr, vc_ptr, vs_ptr, pos_ptr,
                           q_s0, q_s1, k_s0, k_s1, v_s0, v_s1, kc_s0, kc_s1, ks_s0, ks_s1,
                           vc_s0, vc_s1, vs_s0, vs_s1, n_q, HALF: tl.constexpr, NEOX: tl.constexpr,
                           K_CODES: tl.constexpr, V_CODES: tl.constexpr, NEXT_FIRST: tl.constexpr,
                           EARLY: tl.constexpr):
        if NEXT_FIRST:
            let_next_launch_then_wait(EARLY)
        else:
            wait_for_inputs(EARLY)
        t = tl.program_id(0)
        head = tl.program_id(1)
        p = tl.load(pos_ptr + t)
        if head < n_q:
            i = tl.arange(0, HALF)
            cos, sin = _rope_angles(p, inv_freq_ptr, i)
            if NEOX:
                first, second = i, i + HALF
            else:
                first, second = 2 * i, 2 * i + 1
            base = q_ptr + t * q_s0 + head * q_s1
            x1 = tl.load(base + first).to(tl.float32)
            x2 = tl.load(base + second).to(tl.float32)
            out = q_out_ptr + (t * n_q + head) * 2 * HALF
            tl.store(out + first, (x1 * cos - x2 * sin).to(q_out_ptr.dtype.element_ty))
            tl.store(out + second, (x2 * cos + x1 * sin).to(q_out_ptr.dtype.element_ty))
        else:
            kv = head - n_q
            # The rotated key in its own order: each value pairs with a partner (the next
            # value, or the one half a head away) and turns by the angle of its pair.
            j = tl.arange(0, 2 * HALF)
            if NEOX:
                partner, pair, sign = (j + HALF) % (2 * HALF), j % HALF, tl.where(j < HALF, -1.0, 1.0)
            else:
                partner, pair, sign = j ^ 1, j // 2, tl.where(j % 2 == 0, -1.0, 1.0)
            base = k_ptr + t * k_s0 + kv * k_s1
            x = tl.load(base + j).to(tl.float32)
            x_partner = tl.load(base + partner).to(tl.float32)
            angle_cos, angle_sin = _rope_angles(p, inv_freq_ptr, pair)
            key = x * angle_cos + sign * x_partner * angle_sin
            _store_cache_row(kc_ptr, ks_ptr, kv * kc_s0 + p * kc_s1, kv * ks_s0 + p * ks_s1, key, K_CODES)
            value = tl.load(v_ptr + t * v_s0 + kv * v_s1 + j)
            _store_cache_row(vc_ptr, vs_ptr, kv * vc_s0 + p * vc_s1, kv * vs_s0 + p * vs_s1, value, V_CODES)

    @triton.jit
    def _rope_angles(p, inv_freq_ptr, pair):
        """cos and sin of position p's angles for these pairs, as `rope_angles` computes them."""
        angle = p.to(tl.float32) * tl.load(inv_freq_ptr + pair)
        return tl.cos(angle), tl.sin(angle)

    @triton.jit
    def _store_cache_row(data_ptr, scale_ptr, at, scale_at, values, CODES: tl.constexpr):
        """One head's values at one position: as they are, or as q8_0 or q4_0 codes and scales
        (q4_0 eight codes a word, placed as `kv_cache.Q4_SHIFTS` says)."""
        D: tl.constexpr = values.shape[0]
        if CODES == "q8_0":
            codes, scales = round_q8_blocks(tl.reshape(values.to(tl.float32), [D // 32, 32]))
            tl.store(data_ptr + at + tl.arange(0, D), tl.reshape(codes, [D]).to(tl.int8))
            tl.store(scale_ptr + scale_at + tl.arange(0, D // 32), scales.to(scale_ptr.dtype.element_ty))
        elif CODES == "q4_0":
            codes, scales = _round_q4_blocks(tl.reshape(values.to(tl.float32), [D // 32, 32]))
            e = tl.arange(0, 8)[None, :]
            words = tl.sum(tl.reshape(codes, [D // 8, 8]) << (4 * (e // 2) + 16 * (e % 2)), axis=1)
            tl.store(data_ptr.to(tl.pointer_type(tl.int32)) + at // 4 + tl.arange(0, D // 8), words)
            tl.store(scale_ptr + scale_at + tl.arange(0, D // 32), scales.to(scale_ptr.dtype.element_ty))
        else:
            tl.store(data_ptr + at + tl.arange(0, D), values.to(data_ptr.dtype.element_ty))

    @triton.jit
    def _round_q4_blocks(x):
        """Blocks of 32 values, x [B, 32] float32, as `kv_cache.quantize_q4_0` rounds them:
        codes (int32, 0..15) and one scale d each."""
        first = tl.argmax(tl.abs(x), axis=1, tie_break_left=True)
        peak = tl.sum(tl.where(tl.arange(0, 32)[None, :] == first[:, None], x, 0.0), axis=1)
        d = peak / -8.0
        inverse = tl.where(d != 0, 1.0 / tl.where(d != 0, d, 1.0), 0.0)
        return tl.minimum((x * inverse[:, None] + 8.5).to(tl.int32), 15), d

    @triton.jit
    def _load_cache_block(data_ptr, scale_ptr, head_at, head_scale_at, n, c_s1, s_s1, valid,
                          CODES: tl.constexpr, DTYPE: tl.constexpr, HEAD_DIM: tl.constexpr, EMULATE: tl.constexpr):
        """The cache of one head at positions n as [positions, HEAD_DIM] values of DTYPE. Codes
        are read as int32 words (four q8_0 codes or eight q4_0 ones; Triton then moves them to
        the tensor cores' layout as 16-bit values, not byte by byte) and come out as f16."""
        rows = n[:, None]
        if CODES != "float":
            PER_WORD: tl.constexpr = 4 if CODES == "q8_0" else 8
            W: tl.constexpr = HEAD_DIM // PER_WORD
            words_ptr = data_ptr.to(tl.pointer_type(tl.int32))
            words = tl.load(words_ptr + (head_at + rows * c_s1) // 4 + tl.arange(0, W)[None, :],
                            mask=valid[:, None], other=0)
            blocks = tl.arange(0, HEAD_DIM // 32)[None, :]
            scales = tl.load(scale_ptr + head_scale_at + rows * s_s1 + blocks, mask=valid[:, None], other=0.0)
            per_word = tl.reshape(tl.broadcast_to(scales[:, :, None], [n.shape[0], HEAD_DIM // 32, 32 // PER_WORD]),
                                  [n.shape[0], W])
            if CODES == "q8_0":
                values = _q8_words_f16(words, per_word, EMULATE)
            else:
                values = _q4_words_f16(words, per_word, EMULATE)
            return values if EMULATE else _fence_operand(values)
        else:
            values = tl.load(data_ptr + head_at + rows * c_s1 + tl.arange(0, HEAD_DIM)[None, :],
                             mask=valid[:, None], other=0)
            return values.to(DTYPE)

    @triton.jit
    def _fence_operand(values):
        """values (f16) unchanged, through an instruction Triton's layout passes cannot see past.
        Triton sizes the tensor cores' operand registers from the narrowest type the operand's
        values were computed from, and halves it past every join; the joins of the codes' halves
        would make it think they were 8-bit (4 values a register instead of 2), which sends both
        operands and the softmax weights through shared memory and moves every register pair."""
        return tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [values], dtype=tl.float16,
                                         is_pure=False, pack=2)

    @triton.jit
    def _q8_words_f16(words, scales, EMULATE: tl.constexpr):
        """int32 words [rows, cols] of four q8_0 codes times their f16 scales [rows, cols], as f16
        [rows, 4 * cols], each product rounded once. On the GPU without a conversion instruction:
        each byte, its sign bit flipped, becomes the low byte of the f16 1024 + (code + 128), from
        which an exact subtraction leaves the code; converting through f32 costs three
        instructions a code."""
        if EMULATE:  # Triton's interpreter runs no PTX
            f = scales.to(tl.float32)
            b0 = (((words << 24) >> 24).to(tl.float32) * f).to(tl.float16)
            b1 = (((words << 16) >> 24).to(tl.float32) * f).to(tl.float16)
            b2 = (((words << 8) >> 24).to(tl.float32) * f).to(tl.float16)
            b3 = ((words >> 24).to(tl.float32) * f).to(tl.float16)
        else:
            b0, b1, b2, b3 = tl.inline_asm_elementwise(
                """{
                .reg .b32 biased, low, high, magic, s2;
                xor.b32 biased, $4, 0x80808080;
                prmt.b32 low, biased, 0x64646464, 0x5150;
                prmt.b32 high, biased, 0x64646464, 0x5352;
                mov.b32 magic, 0x64806480;
                sub.rn.f16x2 low, low, magic;
                sub.rn.f16x2 high, high, magic;
                mov.b32 s2, {$5, $5};
                mul.rn.f16x2 low, low, s2;
                mul.rn.f16x2 high, high, s2;
                mov.b32 {$0, $1}, low;
                mov.b32 {$2, $3}, high;
                }""",
                "=h,=h,=h,=h,r,h", [words, scales.to(tl.float16)],
                dtype=(tl.float16, tl.float16, tl.float16, tl.float16), is_pure=True, pack=1)
        # join(join(b0, b2), join(b1, b3))[r, c, i, j] is b(2i + j): the codes in memory order
        return tl.reshape(tl.join(tl.join(b0, b2), tl.join(b1, b3)), [words.shape[0], 4 * words.shape[1]])

    @triton.jit
    def _q4_words_f16(words, scales, EMULATE: tl.constexpr):
        """int32 words [rows, cols] of eight q4_0 codes times their f16 scales [rows, cols], as
        f16 [rows, 8 * cols], each product rounded once. Codes 2k and 2k + 1 sit at bits 4k and
        16 + 4k. In each half of the word, a code in bits 0-3 or-ed with 0x6400 is the f16
        1024 + code, and one in bits 4-7 or-ed with 0x5400 is 64 + code (the exponent of 64 puts
        a unit at bit 4); an exact subtraction of 1032 or 72 leaves code - 8. One shift by 8
        brings the other two codes of each half to bits 0-7."""
        if EMULATE:  # Triton's interpreter runs no PTX
            f = scales.to(tl.float32)
            c0 = ((((words >> 0) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c1 = ((((words >> 16) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c2 = ((((words >> 4) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c3 = ((((words >> 20) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c4 = ((((words >> 8) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c5 = ((((words >> 24) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c6 = ((((words >> 12) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
            c7 = ((((words >> 28) & 0xF) - 8).to(tl.float32) * f).to(tl.float16)
        else:
            c0, c1, c2, c3, c4, c5, c6, c7 = tl.inline_asm_elementwise(
                """{
                .reg .b32 t, high, low_bias, high_bias, s2;
                mov.b32 low_bias, 0x64086408;
                mov.b32 high_bias, 0x54805480;
                mov.b32 s2, {$9, $9};
                lop3.b32 t, $8, 0x000F000F, 0x64006400, 0xEA;
                sub.rn.f16x2 t, t, low_bias;
                mul.rn.f16x2 t, t, s2;
                mov.b32 {$0, $1}, t;
                lop3.b32 t, $8, 0x00F000F0, 0x54005400, 0xEA;
                sub.rn.f16x2 t, t, high_bias;
                mul.rn.f16x2 t, t, s2;
                mov.b32 {$2, $3}, t;
                shr.u32 high, $8, 8;
                lop3.b32 t, high, 0x000F000F, 0x64006400, 0xEA;
                sub.rn.f16x2 t, t, low_bias;
                mul.rn.f16x2 t, t, s2;
                mov.b32 {$4, $5}, t;
                lop3.b32 t, high, 0x00F000F0, 0x54005400, 0xEA;
                sub.rn.f16x2 t, t, high_bias;
                mul.rn.f16x2 t, t, s2;
                mov.b32 {$6, $7}, t;
                }""",
                "=h,=h,=h,=h,=h,=h,=h,=h,r,h", [words, scales.to(tl.float16)],
                dtype=(tl.float16,) * 8, is_pure=True, pack=1)
        # The outermost join makes the innermost index: [r, c, a, b, i] is c(4a + 2b + i).
        codes = tl.join(tl.join(tl.join(c0, c4), tl.join(c2, c6)), tl.join(tl.join(c1, c5), tl.join(c3, c7)))
        return tl.reshape(codes, [words.shape[0], 8 * words.shape[1]])


# --- gated activation ------------------------------------------------------------------


def gated_act_torch(gate_up: torch.Tensor, gelu: bool) -> torch.Tensor:
    g, u = gate_up.chunk(2, dim=-1)
    return (F.gelu(g, approximate="tanh") if gelu else F.silu(g)) * u


def gated_act(gate_up: torch.Tensor, gelu: bool, rounded: QuantizedRows | None = None) -> torch.Tensor:
    """act(gate) * up, where gate_up holds [gate | up] along the last dimension. `rounded`
    (GPU only) receives the result, rounded for a GEMV."""
    if use_triton(gate_up):
        return gated_act_triton(gate_up, gelu, rounded)
    return gated_act_torch(gate_up, gelu)


def gated_act_triton(gate_up: torch.Tensor, gelu: bool, rounded: QuantizedRows | None = None) -> torch.Tensor:
    rows, width = gate_up.shape[0], gate_up.shape[-1] // 2
    out = torch.empty(rows, width, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
    _gated_act_kernel[(rows, triton.cdiv(width, block))](
        gate_up, out, words, meta, width, GELU=gelu, ROUND=rounded is not None, BLOCK=block,
        **early_launch_args(gate_up.device),
    )
    return out


if triton is not None:

    @triton.jit
    def _gated_act_kernel(gu_ptr, out_ptr, words_ptr, meta_ptr, width,
                          GELU: tl.constexpr, ROUND: tl.constexpr, EARLY: tl.constexpr, BLOCK: tl.constexpr):
        wait_for_inputs(EARLY)
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < width
        g = tl.load(gu_ptr + row * 2 * width + cols, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + row * 2 * width + width + cols, mask=mask, other=0.0).to(tl.float32)
        if GELU:
            inner = 0.7978845608028654 * (g + 0.044715 * g * g * g)
            act = 0.5 * g * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))
        else:
            act = g / (1.0 + tl.exp(-g))
        out = (act * u).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + row * width + cols, out, mask=mask)
        if ROUND:
            store_rounded(words_ptr, meta_ptr, out, row * (width // 32), tl.program_id(1) * (BLOCK // 32), width // 32)


# --- decode attention ------------------------------------------------------------------


def decode_attention_torch(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor,
                           window: int, scale: float) -> torch.Tensor:
    """One query token. q: [kv_heads, group, head_dim]; caches: [kv_heads, n_ctx, head_dim];
    pos: [1], the query's position. Attends to keys 0..pos (the last `window` of them if window > 0)."""
    n = int(pos.max()) + 1  # read only the keys written so far (this path runs on the CPU)
    keys, values = k_cache.read(n, torch.float32), v_cache.read(n, torch.float32)
    key_pos = torch.arange(n, device=q.device)
    visible = key_pos <= pos
    if window > 0:
        visible &= pos - key_pos < window
    scores = (q.float() @ keys.transpose(1, 2)) * scale
    probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    return (probs @ values).to(q.dtype)


def decode_attention(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor,
                     window: int, scale: float, rounded: QuantizedRows | None = None) -> torch.Tensor:
    """`rounded` (GPU only, head_dim a multiple of 32) receives the output, flattened to one
    row, rounded for a GEMV."""
    if use_triton(q):
        return decode_attention_triton(q, k_cache, v_cache, pos, window, scale, rounded)
    return decode_attention_torch(q, k_cache, v_cache, pos, window, scale)


@dataclass(frozen=True)
class AttentionTiling:
    """Keys per step, programs per multiprocessor to spread the keys over (at most), warps
    per program, key blocks in flight (Triton's software pipelining), and whether keys are the
    rows of the products (which Triton gives to Hopper's warpgroup products, `wgmma`) rather
    than the query heads (`mma.sync`, rows padded from the group's 4 or 8 heads to 16)."""

    block_n: int
    programs_per_sm: int
    num_warps: int
    num_stages: int = 3
    keys_major: bool = False


# From `scripts/bench_attention.py` timings on an H100 over the 8B, 8B-over-2 and 70B-over-4
# head counts. q8_0: within 0.5% of the least total time at depths 8192 and 128 (`--sweep`);
# Triton's pipelining of its loads made them no faster, and two programs per multiprocessor
# hide the loads' latency instead. Float: 128 keys a step were 2% faster at depth 8192 but 12%
# slower at depth 64, where most steps run. q4_0: q8_0's tiling was again the least total time
# (8B heads, 24 tilings). Keys as the rows of the products made the 8B model 1.8% (q4_0) and 1.9%
# (q8_0) faster at depth 8192 on an H100; a float cache's kernel alone was 4% slower.
_CODES_TILING = AttentionTiling(block_n=128, programs_per_sm=2, num_warps=4, num_stages=1, keys_major=True)
DECODE_TILINGS = {"float": AttentionTiling(block_n=64, programs_per_sm=1, num_warps=4, num_stages=3),
                  "q8_0": _CODES_TILING, "q4_0": _CODES_TILING}
# A float cache with 4 or more KV heads on the GPU, from tilings timed in the model (where
# kernels launch early, and the kernel alone ranks them otherwise): 8B tg128 at depth 8192 was
# 3.7% (one H200; 1.8% on an H100) and 1.0% (two GPUs, tensor split) faster, at depth 0 0.1-0.5%
# slower. With 2 KV heads (70B over four H200s) it was 1.2% slower at depth, so fewer heads keep
# the tiling above.
FLOAT_TILING_MANY_HEADS = AttentionTiling(block_n=32, programs_per_sm=2, num_warps=4, num_stages=3)


def decode_tiling(k_cache: CacheTensor, v_cache: CacheTensor, n_kv: int) -> AttentionTiling:
    """The tiling of K's codes where K holds codes, else of V's; a float cache's also depends on
    the number of KV heads on the GPU. `LLAMATP_ATTENTION_TILING` overrides it."""
    if (chosen := tiling_from_env()) is not None:
        return chosen
    codes = next((c for c in (_codes(k_cache), _codes(v_cache)) if c != "float"), "float")
    if codes == "float" and n_kv >= 4:
        return FLOAT_TILING_MANY_HEADS
    return DECODE_TILINGS[codes]


def tiling_from_env() -> AttentionTiling | None:
    """LLAMATP_ATTENTION_TILING="block_n,programs_per_sm,num_warps,num_stages,keys_major", one
    tiling for every cache: for timing tilings in the model (`bench`), which ranks them otherwise
    than timing the kernel alone does."""
    text = os.environ.get("LLAMATP_ATTENTION_TILING")
    if not text:
        return None
    fields = text.split(",")
    if len(fields) != 5 or not all(f.strip().isdigit() for f in fields):
        raise LlamatpError(f"LLAMATP_ATTENTION_TILING={text!r}: expected five integers: keys a step, programs a "
                           "multiprocessor, warps, pipeline stages and keys as rows (0 or 1), as in 64,1,4,3,0")
    block_n, programs_per_sm, num_warps, num_stages, keys_major = map(int, fields)
    if (block_n < 16 or block_n & (block_n - 1) or programs_per_sm < 1 or num_warps not in (1, 2, 4, 8)
            or num_stages < 1 or keys_major > 1):
        raise LlamatpError(f"LLAMATP_ATTENTION_TILING={text!r}: keys a step must be a power of two of at least 16, "
                           "programs and stages at least 1, warps 1, 2, 4 or 8, keys as rows 0 or 1")
    return AttentionTiling(block_n, programs_per_sm, num_warps, num_stages, bool(keys_major))


def shared_memory_needed(tiling: AttentionTiling, head_dim: int, value_bytes: float) -> float:
    """An estimate, from above, of the bytes of shared memory a program takes for its K and V
    blocks in flight: above Triton's count for sm_90 in every case `scripts/attention_shared_memory.py`
    compiles (f32, 256 values a head, 64 keys, three stages: 276 KB, past an H100's 227)."""
    return 2 * tiling.block_n * head_dim * value_bytes * max(tiling.num_stages - 1, 1) * 1.1 + 16384


def fit_shared_memory(tiling: AttentionTiling, head_dim: int, value_bytes: float, limit: int) -> AttentionTiling:
    """Fewer key blocks in flight, then fewer keys a step, until `shared_memory_needed` fits
    `limit` bytes."""
    while shared_memory_needed(tiling, head_dim, value_bytes) > limit and tiling.num_stages > 1:
        tiling = dataclasses.replace(tiling, num_stages=tiling.num_stages - 1)
    while shared_memory_needed(tiling, head_dim, value_bytes) > limit and tiling.block_n > 16:
        tiling = dataclasses.replace(tiling, block_n=tiling.block_n // 2)
    return tiling


def decode_attention_triton(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor,
                            window: int, scale: float, rounded: QuantizedRows | None = None,
                            tiling: AttentionTiling | None = None, tma: bool | None = None,
                            preload_blocks: int | None = None) -> torch.Tensor:
    """Flash-decoding: the keys in use are cut into as many chunks as the GPU runs programs
    at once, each chunk's partial softmax is kept, and a second kernel merges them. The cut
    is made on the GPU from `pos`, so a step reads only the keys written so far and keeps every
    multiprocessor busy at any depth, within one CUDA graph. A float cache is multiplied in
    its own type, codes in f16. `tma` (default: `reads_by_tma`) brings a float cache's blocks
    in through TMA descriptors where a chunk holds two blocks or more."""
    n_kv, group, head_dim = q.shape
    n_ctx = k_cache.data.shape[1]
    tiling = tiling or decode_tiling(k_cache, v_cache, n_kv)
    if q.is_cuda:
        value_bytes = max(c.data.element_size() * c.data.shape[-1] / head_dim for c in (k_cache, v_cache))
        tiling = fit_shared_memory(tiling, head_dim, value_bytes, max_shared_memory(q.device))
    n_chunks = decode_chunks(n_kv, n_ctx, tiling, sm_count(q.device))
    block_g = max(16, triton.next_power_of_2(group))
    if tma is None:
        tma = reads_by_tma(q, k_cache, v_cache, tiling)
    if preload_blocks is None:
        preload_blocks = blocks_read_early(k_cache, v_cache, triton.cdiv(n_ctx, n_chunks) > tiling.block_n)
    descriptors = ((_descriptor(k_cache, tiling.block_n), _descriptor(v_cache, tiling.block_n)) if tma
                   else (k_cache.data, v_cache.data))
    m = torch.empty(n_kv, n_chunks, group, dtype=torch.float32, device=q.device)
    s = torch.empty_like(m)
    acc = torch.empty(n_kv, n_chunks, group, head_dim, dtype=torch.float32, device=q.device)
    _decode_attention_chunk[(n_kv, n_chunks)](
        q, *_cache_args(k_cache), *_cache_args(v_cache), pos, m, s, acc, *descriptors, group, window,
        scale * 1.4426950408889634, *_cache_strides(k_cache), *_cache_strides(v_cache),
        K_CODES=_codes(k_cache), V_CODES=_codes(v_cache),
        K_DTYPE=_dot_dtype(k_cache), V_DTYPE=_dot_dtype(v_cache),
        BLOCK_G=block_g, BLOCK_N=tiling.block_n, HEAD_DIM=head_dim, EMULATE=interpreted(),
        # With 256 values a head the transposed products spill registers (Triton 3.7: 240 bytes
        # a thread over q8_0 codes), where the other way round spills none.
        KEYS_MAJOR=tiling.keys_major and head_dim <= 128, TMA=tma, PRELOAD_N=preload_blocks * tiling.block_n,
        PRELOAD_PARTIAL=attention_during_gemv(),
        num_warps=tiling.num_warps, num_stages=tiling.num_stages, **early_launch_args(q.device),
    )
    out = torch.empty_like(q)
    words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
    width = min(32, head_dim)  # a merge program's values: one block of the rounded output
    _decode_attention_merge[(n_kv * group, head_dim // width)](
        m, s, acc, out, words, meta, group, n_chunks, BLOCK_C=min(128, triton.next_power_of_2(n_chunks)),
        WIDTH=width, HEAD_DIM=head_dim, ROUND=rounded is not None,
        **early_launch_args(q.device),
    )
    return out


# 8B decode at depth 8192 with TMA against pointer loads (`scripts/device_attention_tma.sh`): on
# H200s (4.8 TB/s by `memory_bandwidth`, 36 GB/s a multiprocessor) 0.5% (one GPU) and 0.6% (two,
# tensor split) faster; on H100s (3.35 TB/s, 25.4 GB/s a multiprocessor) 0.8% and 1.0% slower. Short contexts
# (chunks of under two blocks) are read by pointers on both, where TMA was 0.5-0.75% slower.
TMA_MIN_BANDWIDTH_PER_SM = 30e9


def reads_by_tma(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor, tiling: AttentionTiling) -> bool:
    """Whether decode attention reads the cache through TMA: 16-bit K and V of heads of up to
    128 values (rows of at most 256 bytes, as measured), with their heads' positions one after
    another, on Hopper or later whose memory serves each multiprocessor at least
    TMA_MIN_BANDWIDTH_PER_SM. LLAMATP_ATTENTION_TMA=0 turns it off, =1 on wherever it can run."""
    setting = _env_switch("LLAMATP_ATTENTION_TMA")
    if setting is False:
        return False
    if not (q.is_cuda and torch.cuda.get_device_capability(q.device)[0] >= 9 and TensorDescriptor is not None):
        return False
    if setting is None and memory_bandwidth(q.device) / sm_count(q.device) < TMA_MIN_BANDWIDTH_PER_SM:
        return False
    return all(c.scale is None and c.data.element_size() == 2 and c.data.shape[2] <= 128 and c.data.stride(2) == 1
               and c.data.stride(0) == c.data.shape[1] * c.data.stride(1) and tiling.block_n <= 256
               for c in (k_cache, v_cache))


def decode_chunks(n_kv: int, n_ctx: int | None, tiling: AttentionTiling, n_sm: int) -> int:
    """How many chunks decode attention cuts each KV head's keys into: enough programs for
    `tiling.programs_per_sm` on each of n_sm multiprocessors, none shorter than a block of the
    cache (of n_ctx positions; None: deep enough to fill every multiprocessor)."""
    chunks = tiling.programs_per_sm * n_sm // max(n_kv, 1)
    if n_ctx is not None:
        chunks = min(chunks, -(-n_ctx // tiling.block_n))
    return max(1, chunks)


def blocks_read_early(k_cache: CacheTensor, v_cache: CacheTensor, chunks_span_blocks: bool) -> int:
    """How many blocks of keys and values each chunk of decode attention reads before it waits
    for the kernel before it (as far as they lie before the query).

    In a long-context step (`long_context_decode`) the attention is launched while the QKV GEMV
    still runs, and what it reads early comes in during the GEMV's last programs: 4 blocks over a
    float cache (8B over two H200s at depth 8192: 2.9-3.3% faster; 1 or 2 blocks were slower than
    not launching early), 1 over codes (q8_0 on one H200, from where chunks hold more than a block:
    2.0-2.7% faster at depths 5000-8192). Otherwise one over q4_0 codes whose chunks can hold more than one
    block (8B on one H200 at depth 8192: 1.3% faster), none over others (a bf16 cache, whose
    blocks the loop pipelines, was 2.1-2.6% slower at 8192).
    LLAMATP_ATTENTION_PRELOAD=0, 1, 2, 4 or 8 sets it for every cache and step."""
    text = os.environ.get("LLAMATP_ATTENTION_PRELOAD")
    if text:
        if text not in ("0", "1", "2", "4", "8"):
            raise LlamatpError(f"LLAMATP_ATTENTION_PRELOAD={text!r}: expected 0, 1, 2, 4 or 8 blocks of keys")
        return int(text)
    if attention_during_gemv():
        return 4 if _codes(k_cache) == "float" and _codes(v_cache) == "float" else 1
    return 1 if _codes(k_cache) == "q4_0" and _codes(v_cache) == "q4_0" and chunks_span_blocks else 0


# --- long-context decode steps ----------------------------------------------------------
#
# Launched while the QKV GEMV still runs, the attention reads its chunks' first blocks as the
# GEMV's last programs leave the memory idle. Its programs take shared memory (38-41 KB) where
# the GEMV's take none, and that launch costs a step about 1 us a layer (8B over two H200s, depth
# 0: 2.0% slower), which went away when every kernel asked for the largest shared memory
# (scripts/carveout; a multiprocessor seems to change its split of L1 and shared memory only
# once its programs are done), but so did two thirds of the gain at depth. So steps run so only
# from the depth where each chunk holds LONG_CONTEXT_CHUNK_BYTES of keys and values, as a second
# CUDA graph: over two H200s (a bf16 cache) 0.2%, 1.5% and 2.9% faster at depths 2048 (32 keys a
# chunk), 4096 and 8192.

LONG_CONTEXT_CHUNK_BYTES = 16384
_long_context = contextvars.ContextVar("long_context", default=False)


@contextlib.contextmanager
def long_context_decode() -> Iterator[None]:
    """Decode kernels launched inside (in a CUDA graph's capture) are launched as for a long context."""
    token = _long_context.set(True)
    try:
        yield
    finally:
        _long_context.reset(token)


def attention_during_gemv() -> bool:
    """Whether the RoPE kernel lets decode attention launch before it waits itself, so that the
    attention runs beside the QKV GEMV: in long-context steps, unless LLAMATP_ATTENTION_OVERLAP=0
    or 1 says never or always."""
    setting = _env_switch("LLAMATP_ATTENTION_OVERLAP")
    return _long_context.get() if setting is None else setting


def long_context_from(n_kv: int, k_cache: CacheTensor, v_cache: CacheTensor, n_sm: int) -> int | None:
    """The first position whose decode step runs as `long_context_decode` launches it, for
    attention over these caches on a GPU of n_sm multiprocessors: where each chunk of a cache deep
    enough to fill the GPU holds LONG_CONTEXT_CHUNK_BYTES of float keys and values, or more than
    one block of q8_0 codes. None where LLAMATP_ATTENTION_OVERLAP sets one launch for every step,
    and where K or V holds q4_0 codes: there (8B, one H200) such steps were 0.6-0.8% faster from
    depth 5000 on, but having their graph made steps before 4224 0.3-0.5% slower, as over q8_0."""
    if _env_switch("LLAMATP_ATTENTION_OVERLAP") is not None or "q4_0" in (_codes(k_cache), _codes(v_cache)):
        return None
    tiling = decode_tiling(k_cache, v_cache, n_kv)
    n_chunks = decode_chunks(n_kv, None, tiling, n_sm)
    if _codes(k_cache) != "float" or _codes(v_cache) != "float":
        return n_chunks * tiling.block_n
    position_bytes = sum(c.data[0, 0].nbytes for c in (k_cache, v_cache))
    return n_chunks * -(-LONG_CONTEXT_CHUNK_BYTES // position_bytes)


def _env_switch(name: str) -> bool | None:
    """An environment variable set to 0 or 1, as False or True; None if unset or anything else."""
    return {"0": False, "1": True}.get(os.environ.get(name, ""))


def _descriptor(cache: CacheTensor, block_n: int) -> object:
    """A TMA descriptor of one layer's float cache as rows [heads x positions, head_dim], read
    block_n positions at a time."""
    d = cache.data
    return TensorDescriptor(d, [d.shape[0] * d.shape[1], d.shape[2]], [d.stride(1), 1], [block_n, d.shape[2]])


def _dot_dtype(cache: CacheTensor) -> object:
    return {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[cache.values_dtype]


if triton is not None:

    @triton.jit
    def _decode_attention_chunk(q_ptr, k_ptr, ks_ptr, v_ptr, vs_ptr, pos_ptr, m_ptr, s_ptr, acc_ptr, k_desc, v_desc,
                                group, window, scale_log2, kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1,
                                K_CODES: tl.constexpr, V_CODES: tl.constexpr, K_DTYPE: tl.constexpr,
                                V_DTYPE: tl.constexpr,
                                BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
                                KEYS_MAJOR: tl.constexpr, TMA: tl.constexpr, PRELOAD_N: tl.constexpr,
                                PRELOAD_PARTIAL: tl.constexpr, EMULATE: tl.constexpr, EARLY: tl.constexpr):
        """One chunk of one KV head's keys for the `group` query heads that share it."""
        kv = tl.program_id(0)
        c = tl.program_id(1)
        n_chunks = tl.num_programs(1)
        pos = tl.load(pos_ptr).to(tl.int32)  # set before the step's first kernel
        lo = 0
        if window > 0:
            lo = tl.maximum(pos - window + 1, 0)
        per_chunk = tl.cdiv(pos + 1 - lo, n_chunks)
        start = lo + c * per_chunk
        stop = tl.minimum(start + per_chunk, pos + 1)
        if PRELOAD_N > 0:
            # Keys before the query's position were stored by earlier steps, so the chunk's first
            # PRELOAD_N of them are read while the kernels before this one (the last of which
            # stores the query and its key) may still run: launched during the QKV GEMV, as many
            # as lie before the query; otherwise only all PRELOAD_N, and where more of the chunk
            # follows (over two H200s, chunks of one block read before the wait were 0.9% slower).
            early_stop = tl.maximum(tl.minimum(tl.minimum(start + PRELOAD_N, pos), stop), start)
            if not PRELOAD_PARTIAL:
                early_stop = tl.where(start + PRELOAD_N <= tl.minimum(pos, stop - 1), early_stop, start)
            n = start + tl.arange(0, PRELOAD_N)
            k_first = _load_cache_block(k_ptr, ks_ptr, kv * kc_s0, kv * ks_s0, n, kc_s1, ks_s1, n < early_stop,
                                        K_CODES, K_DTYPE, HEAD_DIM, EMULATE)
            v_first = _load_cache_block(v_ptr, vs_ptr, kv * vc_s0, kv * vs_s0, n, vc_s1, vs_s1, n < early_stop,
                                        V_CODES, V_DTYPE, HEAD_DIM, EMULATE)
        wait_for_inputs(EARLY)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + (kv * group + g)[:, None] * HEAD_DIM + d[None, :], mask=(g < group)[:, None], other=0.0)
        if K_CODES != "float":  # scaled before it is rounded to f16, so that large queries stay in its range
            q = q.to(tl.float32) * scale_log2
            scale_log2 = 1.0
        q = q.to(K_DTYPE)
        if KEYS_MAJOR:
            q = tl.trans(q)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        s_i = tl.zeros([BLOCK_G], tl.float32)
        if KEYS_MAJOR:
            acc = tl.zeros([HEAD_DIM, BLOCK_G], tl.float32)
        else:
            acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
        if PRELOAD_N > 0:
            if early_stop > start:
                m_i, s_i, acc = _attend_block(q, k_first, v_first, n < early_stop, m_i, s_i, acc, scale_log2,
                                              KEYS_MAJOR)
                start = early_stop
        by_tma = start
        if TMA and per_chunk >= 2 * BLOCK_N:
            # Whole blocks at positions up to the query's: rows past `stop` are then the next
            # chunk's keys (finite, weighted 0), never slots not yet written in this context.
            by_tma = tl.minimum(start + tl.maximum(pos + 1 - start, 0) // BLOCK_N * BLOCK_N, stop)
            m_i, s_i, acc = _attend_keys(q, k_ptr, ks_ptr, v_ptr, vs_ptr, k_desc, v_desc, kv, start, by_tma, m_i, s_i,
                                         acc, scale_log2, kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1,
                                         K_CODES, V_CODES, K_DTYPE, V_DTYPE, BLOCK_N, HEAD_DIM, KEYS_MAJOR, True,
                                         EMULATE)
        m_i, s_i, acc = _attend_keys(q, k_ptr, ks_ptr, v_ptr, vs_ptr, k_desc, v_desc, kv, by_tma, stop, m_i, s_i,
                                     acc, scale_log2, kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1,
                                     K_CODES, V_CODES, K_DTYPE, V_DTYPE, BLOCK_N, HEAD_DIM, KEYS_MAJOR, False,
                                     EMULATE)
        rows = (kv * n_chunks + c) * group + g
        kept = g < group
        tl.store(m_ptr + rows, m_i, mask=kept)
        tl.store(s_ptr + rows, s_i, mask=kept)
        if KEYS_MAJOR:
            tl.store(acc_ptr + rows[None, :] * HEAD_DIM + d[:, None], acc, mask=kept[None, :])
        else:
            tl.store(acc_ptr + rows[:, None] * HEAD_DIM + d[None, :], acc, mask=kept[:, None])

    @triton.jit
    def _attend_keys(q, k_ptr, ks_ptr, v_ptr, vs_ptr, k_desc, v_desc, kv, start, stop, m_i, s_i, acc, scale_log2,
                     kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1, K_CODES: tl.constexpr,
                     V_CODES: tl.constexpr, K_DTYPE: tl.constexpr, V_DTYPE: tl.constexpr, BLOCK_N: tl.constexpr,
                     HEAD_DIM: tl.constexpr, KEYS_MAJOR: tl.constexpr, TMA: tl.constexpr, EMULATE: tl.constexpr):
        """Keys start..stop of head kv into the running softmax, their blocks read through TMA
        descriptors or by pointers."""
        for n0 in range(start, stop, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            valid = n < stop
            if TMA:
                k = k_desc.load([kv * (kc_s0 // kc_s1) + n0, 0]).to(K_DTYPE)
                v = v_desc.load([kv * (vc_s0 // vc_s1) + n0, 0]).to(V_DTYPE)
            else:
                k = _load_cache_block(k_ptr, ks_ptr, kv * kc_s0, kv * ks_s0, n, kc_s1, ks_s1, valid,
                                      K_CODES, K_DTYPE, HEAD_DIM, EMULATE)
                v = _load_cache_block(v_ptr, vs_ptr, kv * vc_s0, kv * vs_s0, n, vc_s1, vs_s1, valid,
                                      V_CODES, V_DTYPE, HEAD_DIM, EMULATE)
            m_i, s_i, acc = _attend_block(q, k, v, valid, m_i, s_i, acc, scale_log2, KEYS_MAJOR)
        return m_i, s_i, acc

    @triton.jit
    def _attend_block(q, k, v, valid, m_i, s_i, acc, scale_log2, KEYS_MAJOR: tl.constexpr):
        if KEYS_MAJOR:
            m_i, s_i, acc = _attend_block_keys_major(q, k, v, valid, m_i, s_i, acc, scale_log2)
        else:
            m_i, s_i, acc = _attend_block_queries_major(q, k, v, valid, m_i, s_i, acc, scale_log2)
        return m_i, s_i, acc

    @triton.jit
    def _attend_block_queries_major(q, k, v, valid, m_i, s_i, acc, scale_log2):
        """One block of keys into a running softmax (base 2): max m_i, sum s_i, weighted values acc."""
        scores = tl.dot(q, tl.trans(k.to(q.dtype))) * scale_log2
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new[:, None])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        return m_new, s_i * alpha + tl.sum(p, axis=1), acc

    @triton.jit
    def _attend_block_keys_major(q_t, k, v, valid, m_i, s_i, acc_t, scale_log2):
        """`_attend_block_queries_major` with keys as the rows of the products (so that Hopper's warpgroup
        products take them): scores [keys, queries], acc_t [HEAD_DIM, queries]."""
        scores = tl.dot(k.to(q_t.dtype), q_t) * scale_log2
        scores = tl.where(valid[:, None], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new[None, :])
        acc_t = acc_t * alpha[None, :] + tl.dot(tl.trans(v), p.to(v.dtype))
        return m_new, s_i * alpha + tl.sum(p, axis=0), acc_t

    @triton.jit
    def _decode_attention_merge(m_ptr, s_ptr, acc_ptr, out_ptr, words_ptr, meta_ptr, group, n_chunks,
                                BLOCK_C: tl.constexpr, WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr,
                                ROUND: tl.constexpr, EARLY: tl.constexpr):
        """WIDTH values of one query head from its chunks' partial softmaxes, BLOCK_C chunks at a
        time under a running maximum: with up to BLOCK_C chunks, one round of loads."""
        wait_for_inputs(EARLY)
        head = tl.program_id(0)
        part = tl.program_id(1)
        kv = head // group
        g = head % group
        c = tl.arange(0, BLOCK_C)
        d = part * WIDTH + tl.arange(0, WIDTH)
        m_run = float("-inf")
        total = 0.0
        acc = tl.zeros([WIDTH], tl.float32)
        for c0 in range(0, n_chunks, BLOCK_C):
            ok = c0 + c < n_chunks
            at = (kv * n_chunks + c0 + c) * group + g
            m_c = tl.load(m_ptr + at, mask=ok, other=float("-inf"))
            s_c = tl.load(s_ptr + at, mask=ok, other=0.0)
            acc_c = tl.load(acc_ptr + at[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0)
            # Chunk 0 always holds a key, so the maximum is finite from the first round on.
            m_new = tl.maximum(m_run, tl.max(m_c, axis=0))
            weight = tl.exp2(m_c - m_new)
            rescale = tl.exp2(m_run - m_new)
            total = total * rescale + tl.sum(s_c * weight, axis=0)
            acc = acc * rescale + tl.sum(acc_c * weight[:, None], axis=0)
            m_run = m_new
        out = (acc / total).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + head * HEAD_DIM + d, out)
        if ROUND:
            store_rounded(words_ptr, meta_ptr, out, head * (HEAD_DIM // 32), part, part + 1)
