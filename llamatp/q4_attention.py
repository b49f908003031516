"""Flash-decoding over a q4_0 K and V cache, its codes turned into f16 in the registers the
tensor cores read them from (Gluon, Triton's layout-explicit language).

The Triton kernel (`kernels._decode_attention_chunk`) converts codes in a layout of Triton's
choosing and moves them through shared memory into the tensor cores' operand layout, behind a
barrier of all its warps. Here each program is one warp, and each lane loads exactly the codes
that its operand registers of `mma.sync.m16n8k16` hold:
- K^T [128 dims, 32 keys]: lane 4r + c holds keys r, r + 8, r + 16, r + 24 and, of each, 32
  dims whose order inside the product is free (the dot product sums over them). They are taken
  to be dims 32c..32c + 31, one q4_0 block: one 16-byte load and one scale. The query is read in
  the matching order (`_query_dim`).
- V [32 keys, 128 dims]: lane 4r + c holds keys 2c, 2c + 1, 2c + 8, 2c + 9 (and 16 more) and
  16 dims, whose order in the output is free too: dims 16r..16r + 15, two words of each key.
  The operand pairs two keys in one register, so a `prmt` interleaves the words of keys 2i
  and 2i + 1 before the codes are converted.
No shared memory, no barrier; the next block's loads are issued before this block's products.
Needs K and V both q4_0, head_dim 128, at most 16 query heads per KV head.
"""

from __future__ import annotations

import os

import torch

from llamatp.kv_cache import CacheTensor

try:
    import triton.language as tl
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import mma_v2
except ImportError:  # Triton before Gluon, or no Triton
    gluon = None

HEAD_DIM = 128
BLOCK_N = 32  # keys per step of one warp
WARPS = 4  # per program, each on its own blocks of keys, merged once at the end


def usable(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor) -> bool:
    """Whether this kernel serves q's attention (LLAMATP_Q4_ATTENTION=triton turns it off)."""
    n_kv, group, head_dim = q.shape
    return (gluon is not None and q.is_cuda and torch.cuda.get_device_capability(q.device)[0] >= 8
            and k_cache.type == "q4_0" and v_cache.type == "q4_0" and head_dim == HEAD_DIM and group <= 16
            and os.environ.get("LLAMATP_Q4_ATTENTION", "") != "triton")


def attention_chunks(q: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor, pos: torch.Tensor, window: int,
                     scale_log2: float, m: torch.Tensor, s: torch.Tensor, acc: torch.Tensor,
                     early: dict[str, bool]) -> None:
    """Each chunk's running softmax of `kernels.decode_attention_triton` into m, s [n_kv, n_chunks,
    group] and acc [n_kv, n_chunks, group, head_dim] (dims in their own order)."""
    n_kv, n_chunks, group = m.shape
    _attention_chunk[(n_kv, n_chunks)](
        q, k_cache.data, k_cache.scale, v_cache.data, v_cache.scale, pos, m, s, acc, group, window, scale_log2,
        *k_cache.data.stride()[:2], *k_cache.scale.stride()[:2], *v_cache.data.stride()[:2],
        *v_cache.scale.stride()[:2], num_warps=WARPS, **early,
    )


if gluon is not None:
    D = gl.constexpr(HEAD_DIM)
    N = gl.constexpr(BLOCK_N)
    W = gl.constexpr(WARPS)
    _WARP_BASES = [[1, 0, 0, 0], [2, 0, 0, 0]]  # dim 0 of every tensor below is the warp
    # The products are batched over the warps: [W, 16 rows, ...], one warp each.
    _MMA = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[WARPS, 1, 1], instr_shape=[1, 16, 8])
    MMA = gl.constexpr(_MMA)
    OPERAND_A = gl.constexpr(gl.DotOperandLayout(0, _MMA, 2))
    OPERAND_B = gl.constexpr(gl.DotOperandLayout(1, _MMA, 2))
    # K's words [W, 32 keys, 4 blocks, 4 words]: lane 4r + c holds keys r + 8i and block c
    K_WORDS = gl.constexpr(gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 0, 1], [0, 0, 0, 2], [0, 8, 0, 0], [0, 16, 0, 0]],
        lane_bases=[[0, 0, 1, 0], [0, 0, 2, 0], [0, 1, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0]],
        warp_bases=[w[:2] + [0, 0] for w in _WARP_BASES], block_bases=[], shape=[WARPS, 32, 4, 4]))
    # V's words of even (or odd) keys [W, 16 key pairs, 4 blocks, 4 words]: lane 4r + c holds pairs
    # c + 4i and words 2r, 2r + 1 (block r // 2)
    V_WORDS = gl.constexpr(gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 0, 1], [0, 4, 0, 0], [0, 8, 0, 0]],
        lane_bases=[[0, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 2], [0, 0, 1, 0], [0, 0, 2, 0]],
        warp_bases=_WARP_BASES, block_bases=[], shape=[WARPS, 16, 4, 4]))

    def _decode_word(word: str, scale: str, out: list[str]) -> str:
        """PTX: the eight codes of a word (placed as `kv_cache.Q4_SHIFTS` says) times f16x2 `scale`,
        as f16 pairs (codes 0 and 1, 2 and 3, ...) into out; `kernels._q4_words_f16` explains the steps."""
        lines = []
        for i in range(4):
            if i:
                lines.append(f"shr.u32 t, {word}, {4 * i};")
            lines += [f"lop3.b32 t, {word if i == 0 else 't'}, 0x000F000F, 0x64006400, 0xEA;",
                      "sub.rn.f16x2 t, t, magic;", f"mul.rn.f16x2 t, t, {scale};",
                      f"mov.b32 {{{out[2 * i]}, {out[2 * i + 1]}}}, t;"]
        return "\n".join(lines)

    _OUT = [f"${i}" for i in range(16)]
    K_ASM = gl.constexpr("{\n.reg .b32 t, magic, s2;\nmov.b32 magic, 0x64086408;\nmov.b32 s2, {$9, $9};\n"
                         + _decode_word("$8", "s2", _OUT[:8]) + "\n}")
    # words a (key 2i) and b (key 2i + 1) -> lo holds the codes of dims 0, 2, 4, 6 of both, hi those of
    # dims 1, 3, 5, 7; each f16 pair is then (a's value, b's value) of one dim, scaled by (a's, b's) scale
    V_ASM = gl.constexpr("{\n.reg .b32 t, magic, s2, lo, hi;\nmov.b32 magic, 0x64086408;\nmov.b32 s2, {$18, $19};\n"
                         "prmt.b32 lo, $16, $17, 0x5410;\nprmt.b32 hi, $16, $17, 0x7632;\n"
                         + _decode_word("lo", "s2", _OUT[:8]) + "\n" + _decode_word("hi", "s2", _OUT[8:]) + "\n}")

    @gluon.jit
    def _iota(n: gl.constexpr, dim: gl.constexpr, layout: gl.constexpr):
        """0..n-1 along `dim` of a rank-3 or rank-4 `layout`, of size 1 along the other dims."""
        if layout.rank == 4:
            if dim == 0:
                x = gl.arange(0, n, gl.SliceLayout(1, gl.SliceLayout(2, gl.SliceLayout(3, layout))))
                x = gl.expand_dims(gl.expand_dims(gl.expand_dims(x, 1), 2), 3)
            elif dim == 1:
                x = gl.arange(0, n, gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, layout))))
                x = gl.expand_dims(gl.expand_dims(gl.expand_dims(x, 0), 2), 3)
            elif dim == 2:
                x = gl.arange(0, n, gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(3, layout))))
                x = gl.expand_dims(gl.expand_dims(gl.expand_dims(x, 0), 1), 3)
            else:
                x = gl.arange(0, n, gl.SliceLayout(0, gl.SliceLayout(1, gl.SliceLayout(2, layout))))
                x = gl.expand_dims(gl.expand_dims(gl.expand_dims(x, 0), 1), 2)
        else:
            if dim == 0:
                x = gl.expand_dims(gl.expand_dims(gl.arange(0, n, gl.SliceLayout(1, gl.SliceLayout(2, layout))), 1), 2)
            elif dim == 1:
                x = gl.expand_dims(gl.expand_dims(gl.arange(0, n, gl.SliceLayout(0, gl.SliceLayout(2, layout))), 0), 2)
            else:
                x = gl.expand_dims(gl.expand_dims(gl.arange(0, n, gl.SliceLayout(0, gl.SliceLayout(1, layout))), 0), 1)
        return x

    @gluon.jit
    def _bits3(c0, c1, c2, c3, c4, c5, c6, c7):
        """[..., 2, 2, 2] with [..., a, b, i] = c(4a + 2b + i)."""
        return gl.join(gl.join(gl.join(c0, c4), gl.join(c2, c6)), gl.join(gl.join(c1, c5), gl.join(c3, c7)))

    @gluon.jit
    def _k_operand(words, scales):
        """K's words [W, 32 keys, 4, 4] (K_WORDS) and their scales [W, 32, 4] -> K^T [W, 128 dims in
        the product's order, 32 keys] in OPERAND_B: index 32j + 16e2 + 8e1 + 2c + e0 is dim
        32c + 8j + 4e2 + 2e1 + e0 (word 4c + j, its code 4e2 + 2e1 + e0)."""
        c0, c1, c2, c3, c4, c5, c6, c7 = gl.inline_asm_elementwise(
            K_ASM, "=h,=h,=h,=h,=h,=h,=h,=h,r,h", [words, gl.expand_dims(scales, 3)], dtype=(gl.float16,) * 8,
            is_pure=True, pack=1)
        x = _bits3(c0, c1, c2, c3, c4, c5, c6, c7)  # [w, n, c, j, e2, e1, e0]
        x = gl.permute(x, [0, 3, 4, 5, 2, 6, 1])
        return gl.convert_layout(gl.reshape(x, [W, D, N]), OPERAND_B)

    @gluon.jit
    def _v_operand(a, b, sa, sb):
        """V's words of even keys a and odd keys b [W, 16 pairs, 4, 4] (V_WORDS) and their scales
        [W, 16, 4] -> V [W, 32 keys, 128 dims in the output's order] in OPERAND_B: index 8q + r is dim 16r + q."""
        o = gl.inline_asm_elementwise(
            V_ASM, "=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,r,r,h,h",
            [a, b, gl.expand_dims(sa, 3), gl.expand_dims(sb, 3)], dtype=(gl.float16,) * 16, is_pure=True, pack=1)
        # o[2i + s] is dim 2i of key s (i < 4), o[8 + 2i + s] dim 2i + 1
        x = gl.join(_bits3(o[0], o[8], o[2], o[10], o[4], o[12], o[6], o[14]),
                    _bits3(o[1], o[9], o[3], o[11], o[5], o[13], o[7], o[15]))  # [w, p, block, word, e2, e1, e0, s]
        x = gl.reshape(x, [W, 16, 4, 2, 2, 2, 2, 2, 2])  # [w, p, block, r % 2, word % 2, e2, e1, e0, s]
        x = gl.permute(x, [0, 1, 8, 4, 5, 6, 7, 2, 3])  # [w, p, s, word % 2, e2, e1, e0, r // 2, r % 2]
        return gl.convert_layout(gl.reshape(x, [W, N, D]), OPERAND_B)

    @gluon.jit
    def _attention_chunk(q_ptr, k_ptr, ks_ptr, v_ptr, vs_ptr, pos_ptr, m_ptr, s_ptr, acc_ptr, group, window,
                         scale_log2, kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1, EARLY: gl.constexpr):
        """One chunk of one KV head's keys for the `group` query heads that share it (rows of the
        16-row products), as `kernels._decode_attention_chunk` computes it. Warp w takes blocks
        w, w + W, ... of the chunk, with a running softmax of its own."""
        if EARLY:
            tl.extra.cuda.gdc_wait()
            tl.extra.cuda.gdc_launch_dependents()
        kv = gl.program_id(0)
        c = gl.program_id(1)
        n_chunks = gl.num_programs(1)
        pos = gl.load(pos_ptr).to(gl.int32)
        lo = 0
        if window > 0:
            lo = gl.maximum(pos - window + 1, 0)
        per_chunk = gl.cdiv(pos + 1 - lo, n_chunks)
        start = lo + c * per_chunk
        stop = gl.minimum(start + per_chunk, pos + 1)

        g = _iota(16, 1, OPERAND_A)
        k = _iota(D, 2, OPERAND_A)
        dim = 32 * ((k >> 1) & 3) + 8 * (k >> 5) + 4 * ((k >> 4) & 1) + 2 * ((k >> 3) & 1) + (k & 1)
        q = gl.load(q_ptr + (kv * group + g) * D + dim + 0 * _iota(W, 0, OPERAND_A), mask=g < group, other=0.0)
        q = (q.to(gl.float32) * scale_log2).to(gl.float16)  # scaled first: large queries stay in f16's range

        # Block offsets of warp w: keys start + 32w + n, then W blocks further each step.
        keys = start + N * _iota(W, 0, K_WORDS) + _iota(N, 1, K_WORDS)  # [W, 32, 1, 1]
        k_words = (k_ptr.to(gl.pointer_type(gl.int32)) + (kv * kc_s0 + keys * kc_s1) // 4
                   + 4 * _iota(4, 2, K_WORDS) + _iota(4, 3, K_WORDS))
        K_SCALES: gl.constexpr = gl.SliceLayout(3, K_WORDS)
        k_keys = start + N * _iota(W, 0, K_SCALES) + _iota(N, 1, K_SCALES)  # [W, 32, 1]
        k_scales = ks_ptr + kv * ks_s0 + k_keys * ks_s1 + _iota(4, 2, K_SCALES)
        even = start + N * _iota(W, 0, V_WORDS) + 2 * _iota(16, 1, V_WORDS)  # [W, 16, 1, 1]
        v_words = (v_ptr.to(gl.pointer_type(gl.int32)) + (kv * vc_s0 + even * vc_s1) // 4
                   + 4 * _iota(4, 2, V_WORDS) + _iota(4, 3, V_WORDS))
        V_SCALES: gl.constexpr = gl.SliceLayout(3, V_WORDS)
        v_even = start + N * _iota(W, 0, V_SCALES) + 2 * _iota(16, 1, V_SCALES)  # [W, 16, 1]
        v_scales = vs_ptr + kv * vs_s0 + v_even * vs_s1 + _iota(4, 2, V_SCALES)
        key_cols = start + N * _iota(W, 0, MMA) + _iota(N, 2, MMA)  # [W, 1, 32]

        m_i = gl.full([W, 16], float("-inf"), gl.float32, layout=gl.SliceLayout(2, MMA))
        s_i = gl.zeros([W, 16], gl.float32, layout=gl.SliceLayout(2, MMA))
        acc = gl.zeros([W, 16, D], gl.float32, layout=MMA)
        words = gl.load(k_words, mask=keys < stop, other=0)
        scales = gl.load(k_scales, mask=k_keys < stop, other=0.0)
        a = gl.load(v_words, mask=even < stop, other=0)
        b = gl.load(v_words + vc_s1 // 4, mask=even + 1 < stop, other=0)
        sa = gl.load(v_scales, mask=v_even < stop, other=0.0)
        sb = gl.load(v_scales + vs_s1, mask=v_even + 1 < stop, other=0.0)
        for n0 in range(start, stop, W * N):
            step = n0 + W * N - start  # the next blocks' loads go out once this step's codes are converted
            kt = _k_operand(words, scales)
            words = gl.load(k_words + step * (kc_s1 // 4), mask=keys + step < stop, other=0)
            scales = gl.load(k_scales + step * ks_s1, mask=k_keys + step < stop, other=0.0)
            scores = mma_v2(q, kt, gl.zeros([W, 16, N], gl.float32, layout=MMA))
            v = _v_operand(a, b, sa, sb)
            a = gl.load(v_words + step * (vc_s1 // 4), mask=even + step < stop, other=0)
            b = gl.load(v_words + (step + 1) * (vc_s1 // 4), mask=even + step + 1 < stop, other=0)
            sa = gl.load(v_scales + step * vs_s1, mask=v_even + step < stop, other=0.0)
            sb = gl.load(v_scales + (step + 1) * vs_s1, mask=v_even + step + 1 < stop, other=0.0)

            scores = gl.where(key_cols + (n0 - start) < stop, scores, float("-inf"))
            m_new = gl.maximum(m_i, gl.max(scores, axis=2))
            m_use = gl.where(m_new > float("-inf"), m_new, 0.0)  # a warp may have seen no key yet
            alpha = gl.exp2(m_i - m_use)
            p = gl.exp2(scores - gl.expand_dims(m_use, 2))
            s_i = s_i * alpha + gl.sum(p, axis=2)
            acc = mma_v2(gl.convert_layout(p.to(gl.float16), OPERAND_A), v, acc * gl.expand_dims(alpha, 2))
            m_i = m_new

        # The warps' softmaxes into one.
        m_all = gl.max(m_i, axis=0)
        weight = gl.where(m_i > float("-inf"), gl.exp2(m_i - gl.expand_dims(m_all, 0)), 0.0)
        s_all = gl.sum(s_i * weight, axis=0)
        acc_all = gl.sum(acc * gl.expand_dims(weight, 2), axis=0)
        ROWS: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(2, MMA))
        g_out = gl.arange(0, 16, ROWS)
        rows = (kv * n_chunks + c) * group + g_out
        gl.store(m_ptr + rows, m_all, mask=g_out < group)
        gl.store(s_ptr + rows, s_all, mask=g_out < group)
        OUT: gl.constexpr = gl.SliceLayout(0, MMA)
        g_acc = gl.expand_dims(gl.arange(0, 16, gl.SliceLayout(1, OUT)), 1)
        n = gl.expand_dims(gl.arange(0, D, gl.SliceLayout(0, OUT)), 0)
        gl.store(acc_ptr + ((kv * n_chunks + c) * group + g_acc) * D + 16 * (n % 8) + n // 8, acc_all,
                 mask=g_acc < group)
