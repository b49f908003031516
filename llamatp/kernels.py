"""Fused element-wise kernels for the GPU decode path, with plain-torch twins.

A decode step at batch 1 is a chain of tiny operations; in a CUDA graph each kernel
still costs a couple of microseconds, so a layer of ~45 unfused kernels spends more time
launching than computing. These fuse the chains into one kernel each:
- `add_rms_norm`: residual add + RMSNorm (the norm alone when there is no residual),
- `rope_store_kv`: RoPE on q and k, and the write of k and v into the cache,
- `gated_act`: SiLU or GELU(tanh) of the gate times the up projection.
The torch versions run on CPU and define what the kernels must compute. The norm, the
activation and the attention merge feed GEMVs: given a `QuantizedRows` (`rounded`), they
also write their output rounded as the GEMV reads it, which saves the GEMV a kernel of its
own. On Hopper every kernel here starts before the one before it ends (`gemv.early_launch_args`)
and waits for it (EARLY) before it touches memory: the launches overlap the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl

    from llamatp.quant.gemv import QuantizedRows, early_launch_args, store_rounded_blocks, wait_for_inputs
except ImportError:  # CPU-only installs run the torch versions
    triton = None


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
            _store_rounded(words_ptr, meta_ptr, out, row * (width // 32), 0, width // 32)


    @triton.jit
    def _store_rounded(words_ptr, meta_ptr, values, first_block, block_start, n_blocks):
        """Round `values` (a run of whole blocks of 32, from block `block_start` of a row whose
        blocks start at `first_block`) for a GEMV, leaving out blocks past `n_blocks`."""
        BLOCKS: tl.constexpr = values.shape[0] // 32
        blocks = block_start + tl.arange(0, BLOCKS)
        x = tl.reshape(values.to(tl.float32), [BLOCKS, 32])
        store_rounded_blocks(words_ptr, meta_ptr, first_block + blocks, x, blocks < n_blocks)


# --- RoPE + KV cache write -------------------------------------------------------------


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


def rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  neox: bool, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotate q and k; store k and v at `pos` in the caches ([kv_heads, n_ctx, head_dim]).

    q: [T, q_heads, head_dim]; k, v: [T, kv_heads, head_dim]. Returns the rotated q.
    """
    fn = rope_store_kv_triton if use_triton(q) else rope_store_kv_torch
    return fn(q, k, v, cos, sin, neox, k_cache, v_cache, pos)


def rope_store_kv_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        neox: bool, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    q, k = rope_torch(q, cos, sin, neox), rope_torch(k, cos, sin, neox)
    k_cache.index_copy_(1, pos, k.transpose(0, 1).to(k_cache.dtype))
    v_cache.index_copy_(1, pos, v.transpose(0, 1).to(v_cache.dtype))
    return q


def rope_store_kv_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         neox: bool, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    T, n_q, hd = q.shape
    n_kv = k.shape[1]
    q_out = torch.empty_like(q)
    _rope_store_kernel[(T, n_q + n_kv)](
        q, k, v, cos, sin, q_out, k_cache, v_cache, pos,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), n_q, HALF=hd // 2, NEOX=neox, **early_launch_args(q.device),
    )
    return q_out


if triton is not None:

    @triton.jit
    def _rope_store_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, q_out_ptr, kc_ptr, vc_ptr, pos_ptr,
                           q_s0, q_s1, k_s0, k_s1, v_s0, v_s1, c_s0, c_s1, n_q,
                           HALF: tl.constexpr, NEOX: tl.constexpr, EARLY: tl.constexpr):
        wait_for_inputs(EARLY)
        t = tl.program_id(0)
        head = tl.program_id(1)
        i = tl.arange(0, HALF)
        cos = tl.load(cos_ptr + t * HALF + i)
        sin = tl.load(sin_ptr + t * HALF + i)
        if NEOX:
            first, second = i, i + HALF
        else:
            first, second = 2 * i, 2 * i + 1
        if head < n_q:
            base = q_ptr + t * q_s0 + head * q_s1
            x1 = tl.load(base + first).to(tl.float32)
            x2 = tl.load(base + second).to(tl.float32)
            out = q_out_ptr + (t * n_q + head) * 2 * HALF
            tl.store(out + first, (x1 * cos - x2 * sin).to(q_out_ptr.dtype.element_ty))
            tl.store(out + second, (x2 * cos + x1 * sin).to(q_out_ptr.dtype.element_ty))
        else:
            kv = head - n_q
            p = tl.load(pos_ptr + t)
            base = k_ptr + t * k_s0 + kv * k_s1
            x1 = tl.load(base + first).to(tl.float32)
            x2 = tl.load(base + second).to(tl.float32)
            dst = kc_ptr + kv * c_s0 + p * c_s1
            tl.store(dst + first, (x1 * cos - x2 * sin).to(kc_ptr.dtype.element_ty))
            tl.store(dst + second, (x2 * cos + x1 * sin).to(kc_ptr.dtype.element_ty))
            j = tl.arange(0, 2 * HALF)
            vals = tl.load(v_ptr + t * v_s0 + kv * v_s1 + j)
            tl.store(vc_ptr + kv * c_s0 + p * c_s1 + j, vals.to(vc_ptr.dtype.element_ty))


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
            _store_rounded(words_ptr, meta_ptr, out, row * (width // 32), tl.program_id(1) * (BLOCK // 32), width // 32)


# --- decode attention ------------------------------------------------------------------


def decode_attention_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor,
                           window: int, scale: float) -> torch.Tensor:
    """One query token. q: [kv_heads, group, head_dim]; caches: [kv_heads, n_ctx, head_dim];
    pos: [1], the query's position. Attends to keys 0..pos (the last `window` of them if window > 0)."""
    n = int(pos.max()) + 1  # read only the keys written so far (this path runs on the CPU)
    keys, values = k_cache[:, :n], v_cache[:, :n]
    key_pos = torch.arange(n, device=q.device)
    visible = key_pos <= pos
    if window > 0:
        visible &= pos - key_pos < window
    scores = (q.float() @ keys.float().transpose(1, 2)) * scale
    probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    return (probs @ values.float()).to(q.dtype)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor,
                     window: int, scale: float, rounded: QuantizedRows | None = None) -> torch.Tensor:
    """`rounded` (GPU only, head_dim a multiple of 32) receives the output, flattened to one
    row, rounded for a GEMV."""
    if use_triton(q):
        return decode_attention_triton(q, k_cache, v_cache, pos, window, scale, rounded)
    return decode_attention_torch(q, k_cache, v_cache, pos, window, scale)


def decode_attention_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor,
                            window: int, scale: float, rounded: QuantizedRows | None = None) -> torch.Tensor:
    """Flash-decoding: the keys are cut into chunks handled in parallel, each chunk's partial
    softmax is kept, and a second kernel merges them. Only keys up to `pos` are read, so the
    cost follows the context in use, not the cache's size, and no mask is built."""
    n_kv, group, head_dim = q.shape
    n_ctx = k_cache.shape[1]
    block_n = 64
    # Chunks of at least 64 keys, up to 128 programs: a short context is then still spread over
    # many multiprocessors, which each wait on memory for a key block or two.
    n_chunks = max(1, min(triton.cdiv(n_ctx, block_n), 128 // max(n_kv, 1)))
    chunk = triton.cdiv(triton.cdiv(n_ctx, n_chunks), block_n) * block_n
    block_g = max(16, triton.next_power_of_2(group))
    m = torch.empty(n_kv, n_chunks, block_g, dtype=torch.float32, device=q.device)
    s = torch.empty_like(m)
    acc = torch.empty(n_kv, n_chunks, block_g, head_dim, dtype=torch.float32, device=q.device)
    _decode_attention_chunk[(n_kv, n_chunks)](
        q, k_cache, v_cache, pos, m, s, acc, group, chunk, window, scale * 1.4426950408889634,
        k_cache.stride(0), k_cache.stride(1), BLOCK_G=block_g, BLOCK_N=block_n, HEAD_DIM=head_dim,
        **early_launch_args(q.device),
    )
    out = torch.empty_like(q)
    words, meta = (rounded.words, rounded.meta) if rounded is not None else (out, out)
    _decode_attention_merge[(n_kv, group)](
        m, s, acc, out, words, meta, group, n_chunks, BLOCK_G=block_g,
        BLOCK_C=min(32, triton.next_power_of_2(n_chunks)), HEAD_DIM=head_dim, ROUND=rounded is not None,
        **early_launch_args(q.device),
    )
    return out


if triton is not None:

    @triton.jit
    def _decode_attention_chunk(q_ptr, k_ptr, v_ptr, pos_ptr, m_ptr, s_ptr, acc_ptr, group, chunk, window,
                                scale_log2, c_s0, c_s1,
                                BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
                                EARLY: tl.constexpr):
        wait_for_inputs(EARLY)
        kv = tl.program_id(0)
        c = tl.program_id(1)
        n_chunks = tl.num_programs(1)
        pos = tl.load(pos_ptr).to(tl.int32)
        lo = 0
        if window > 0:
            lo = tl.maximum(pos - window + 1, 0)
        start = tl.maximum(c * chunk, lo)
        stop = tl.minimum((c + 1) * chunk, pos + 1)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + (kv * group + g)[:, None] * HEAD_DIM + d[None, :], mask=(g < group)[:, None], other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        s_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
        for n0 in range(start, stop, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            valid = n < stop
            k = tl.load(k_ptr + kv * c_s0 + n[:, None] * c_s1 + d[None, :], mask=valid[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k)) * scale_log2
            scores = tl.where(valid[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(scores - m_new[:, None])
            v = tl.load(v_ptr + kv * c_s0 + n[:, None] * c_s1 + d[None, :], mask=valid[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            s_i = s_i * alpha + tl.sum(p, axis=1)
            m_i = m_new
        base = (kv * n_chunks + c) * BLOCK_G
        tl.store(m_ptr + base + g, m_i)
        tl.store(s_ptr + base + g, s_i)
        tl.store(acc_ptr + (base + g)[:, None] * HEAD_DIM + d[None, :], acc)

    @triton.jit
    def _decode_attention_merge(m_ptr, s_ptr, acc_ptr, out_ptr, words_ptr, meta_ptr, group, n_chunks,
                                BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr, HEAD_DIM: tl.constexpr,
                                ROUND: tl.constexpr, EARLY: tl.constexpr):
        """One query head: its chunks' partial softmaxes, BLOCK_C at a time (loads in parallel,
        rather than a chain of dependent loads per chunk)."""
        wait_for_inputs(EARLY)
        kv = tl.program_id(0)
        g = tl.program_id(1)
        c = tl.arange(0, BLOCK_C)
        d = tl.arange(0, HEAD_DIM)
        m_all = float("-inf")
        for c0 in range(0, n_chunks, BLOCK_C):
            at = (kv * n_chunks + c0 + c) * BLOCK_G + g
            m_all = tl.maximum(m_all, tl.max(tl.load(m_ptr + at, mask=c0 + c < n_chunks, other=float("-inf")), axis=0))
        total = 0.0
        acc = tl.zeros([HEAD_DIM], tl.float32)
        for c0 in range(0, n_chunks, BLOCK_C):
            ok = c0 + c < n_chunks
            at = (kv * n_chunks + c0 + c) * BLOCK_G + g
            m_c = tl.load(m_ptr + at, mask=ok, other=float("-inf"))
            weight = tl.where(m_c == float("-inf"), 0.0, tl.exp2(m_c - m_all))
            total += tl.sum(tl.load(s_ptr + at, mask=ok, other=0.0) * weight, axis=0)
            part = tl.load(acc_ptr + at[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0)
            acc += tl.sum(part * weight[:, None], axis=0)
        out = (acc / total).to(out_ptr.dtype.element_ty)
        head = kv * group + g
        tl.store(out_ptr + head * HEAD_DIM + d, out)
        if ROUND:
            _store_rounded(words_ptr, meta_ptr, out, 0, head * (HEAD_DIM // 32), (head + 1) * (HEAD_DIM // 32))
