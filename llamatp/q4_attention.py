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
BLOCK_N = 32  # keys per step


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
        *v_cache.scale.stride()[:2], num_warps=1, **early,
    )


if gluon is not None:
    D = gl.constexpr(HEAD_DIM)
    N = gl.constexpr(BLOCK_N)
    _MMA = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1], instr_shape=[16, 8])
    MMA = gl.constexpr(_MMA)
    OPERAND_A = gl.constexpr(gl.DotOperandLayout(0, _MMA, 2))
    OPERAND_B = gl.constexpr(gl.DotOperandLayout(1, _MMA, 2))
    # K's words [32 keys, 16 words]: lane 4r + c holds keys r + 8i in registers and words 4c..4c + 3
    K_WORDS = gl.constexpr(gl.DistributedLinearLayout(
        reg_bases=[[0, 1], [0, 2], [8, 0], [16, 0]], lane_bases=[[0, 4], [0, 8], [1, 0], [2, 0], [4, 0]],
        warp_bases=[], block_bases=[], shape=[32, 16]))
    # V's words of even (or odd) keys [16 key pairs, 16 words]: lane 4r + c holds pairs c + 4i and words 2r, 2r + 1
    V_WORDS = gl.constexpr(gl.DistributedLinearLayout(
        reg_bases=[[0, 1], [4, 0], [8, 0]], lane_bases=[[1, 0], [2, 0], [0, 2], [0, 4], [0, 8]],
        warp_bases=[], block_bases=[], shape=[16, 16]))

    def _decode_word(word: str, scale: str, out: list[str]) -> str:
        """PTX: the eight codes of a word (placed as `kv_cache.Q4_SHIFTS` says) times f16x2 `scale`,
        as f16 pairs (codes 0 and 1, 2 and 3, ...) into out; `kernels._q4_words_f16` explains the steps."""
        lines = []
        for i in range(4):
            source = word if i == 0 else "t"
            if i:
                lines.append(f"shr.u32 t, {word}, {4 * i};")
            lines += [f"lop3.b32 t, {source}, 0x000F000F, 0x64006400, 0xEA;", "sub.rn.f16x2 t, t, magic;",
                      f"mul.rn.f16x2 t, t, {scale};", f"mov.b32 {{{out[2 * i]}, {out[2 * i + 1]}}}, t;"]
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
    def _bits3(c0, c1, c2, c3, c4, c5, c6, c7):
        """[..., 2, 2, 2] with [..., a, b, i] = c(4a + 2b + i)."""
        return gl.join(gl.join(gl.join(c0, c4), gl.join(c2, c6)), gl.join(gl.join(c1, c5), gl.join(c3, c7)))

    @gluon.jit
    def _k_operand(words, scales):
        """K's words [32 keys, 16] (K_WORDS) and their scales -> K^T [128 dims in K's product order,
        32 keys] in OPERAND_B: product index 32j + 16e2 + 8e1 + 2c + e0 is dim 32c + 8j + 4e2 + 2e1 + e0."""
        c0, c1, c2, c3, c4, c5, c6, c7 = gl.inline_asm_elementwise(
            K_ASM, "=h,=h,=h,=h,=h,=h,=h,=h,r,h", [words, scales], dtype=(gl.float16,) * 8, is_pure=True, pack=1)
        x = gl.reshape(_bits3(c0, c1, c2, c3, c4, c5, c6, c7), [32, 4, 4, 2, 2, 2])  # [n, c, j, e2, e1, e0]
        x = gl.permute(x, [2, 3, 4, 1, 5, 0])
        return gl.convert_layout(gl.reshape(x, [128, 32]), OPERAND_B)

    @gluon.jit
    def _v_operand(a, b, sa, sb):
        """V's words of even keys a and odd keys b [16 pairs, 16 words] (V_WORDS) and their scales ->
        V [32 keys, 128 dims in output order] in OPERAND_B: output index 8q + r is dim 16r + q."""
        o = gl.inline_asm_elementwise(
            V_ASM, "=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,=h,r,r,h,h", [a, b, sa, sb],
            dtype=(gl.float16,) * 16, is_pure=True, pack=1)
        # o[2i + s] is dim 2i of key s (i < 4), o[8 + 2i + s] dim 2i + 1
        x = gl.join(_bits3(o[0], o[8], o[2], o[10], o[4], o[12], o[6], o[14]),
                    _bits3(o[1], o[9], o[3], o[11], o[5], o[13], o[7], o[15]))  # [p, w, e2, e1, e0, s]
        x = gl.reshape(x, [16, 8, 2, 2, 2, 2, 2])  # [p, r, w % 2, e2, e1, e0, s]
        x = gl.permute(x, [0, 6, 2, 3, 4, 5, 1])  # [p, s, w % 2, e2, e1, e0, r]
        return gl.convert_layout(gl.reshape(x, [32, 128]), OPERAND_B)

    @gluon.jit
    def _attention_chunk(q_ptr, k_ptr, ks_ptr, v_ptr, vs_ptr, pos_ptr, m_ptr, s_ptr, acc_ptr, group, window,
                         scale_log2, kc_s0, kc_s1, ks_s0, ks_s1, vc_s0, vc_s1, vs_s0, vs_s1, EARLY: gl.constexpr):
        """One chunk of one KV head's keys for the `group` query heads that share it (rows of the
        16-row products), as `kernels._decode_attention_chunk` computes it."""
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

        g = gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, OPERAND_A)), 1)
        k = gl.expand_dims(gl.arange(0, D, layout=gl.SliceLayout(0, OPERAND_A)), 0)
        dim = 32 * ((k >> 1) & 3) + 8 * (k >> 5) + 4 * ((k >> 4) & 1) + 2 * ((k >> 3) & 1) + (k & 1)
        q = gl.load(q_ptr + (kv * group + g) * D + dim, mask=g < group, other=0.0)
        q = (q.to(gl.float32) * scale_log2).to(gl.float16)  # scaled first: large queries stay in f16's range

        keys = gl.expand_dims(start + gl.arange(0, 32, layout=gl.SliceLayout(1, K_WORDS)), 1)
        kw = gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(0, K_WORDS)), 0)
        k_words = k_ptr.to(gl.pointer_type(gl.int32)) + (kv * kc_s0 + keys * kc_s1) // 4 + kw
        k_scales = ks_ptr + kv * ks_s0 + keys * ks_s1 + kw // 4
        even = gl.expand_dims(start + 2 * gl.arange(0, 16, layout=gl.SliceLayout(1, V_WORDS)), 1)
        vw = gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(0, V_WORDS)), 0)
        v_words = v_ptr.to(gl.pointer_type(gl.int32)) + (kv * vc_s0 + even * vc_s1) // 4 + vw
        v_scales = vs_ptr + kv * vs_s0 + even * vs_s1 + vw // 4
        key_cols = gl.arange(0, 32, layout=gl.SliceLayout(0, MMA))

        words = gl.load(k_words, mask=keys < stop, other=0)
        scales = gl.load(k_scales, mask=keys < stop, other=0.0)
        a = gl.load(v_words, mask=even < stop, other=0)
        b = gl.load(v_words + vc_s1 // 4, mask=even + 1 < stop, other=0)
        sa = gl.load(v_scales, mask=even < stop, other=0.0)
        sb = gl.load(v_scales + vs_s1, mask=even + 1 < stop, other=0.0)
        m_i = gl.full([16], float("-inf"), gl.float32, layout=gl.SliceLayout(1, MMA))
        s_i = gl.zeros([16], gl.float32, layout=gl.SliceLayout(1, MMA))
        acc = gl.zeros([16, D], gl.float32, layout=MMA)
        for n0 in range(start, stop, N):
            kt = _k_operand(words, scales)
            v = _v_operand(a, b, sa, sb)
            step = n0 + N - start  # the next block's loads, in flight while this one is multiplied
            words = gl.load(k_words + step * (kc_s1 // 4), mask=keys + step < stop, other=0)
            scales = gl.load(k_scales + step * ks_s1, mask=keys + step < stop, other=0.0)
            a = gl.load(v_words + step * (vc_s1 // 4), mask=even + step < stop, other=0)
            b = gl.load(v_words + (step + 1) * (vc_s1 // 4), mask=even + step + 1 < stop, other=0)
            sa = gl.load(v_scales + step * vs_s1, mask=even + step < stop, other=0.0)
            sb = gl.load(v_scales + (step + 1) * vs_s1, mask=even + step + 1 < stop, other=0.0)

            scores = mma_v2(q, kt, gl.zeros([16, 32], gl.float32, layout=MMA))
            scores = gl.where(gl.expand_dims(n0 + key_cols < stop, 0), scores, float("-inf"))
            m_new = gl.maximum(m_i, gl.max(scores, axis=1))
            # The maximum in use moves only when a score passes it by 2^8 (p stays under 256 in f16):
            # the values are then rescaled in a few steps, not in every one.
            if gl.max(m_new - m_i, axis=0) > 8.0:
                alpha = gl.exp2(m_i - m_new)
                acc = acc * gl.expand_dims(alpha, 1)
                s_i = s_i * alpha
                m_i = m_new
            p = gl.exp2(scores - gl.expand_dims(m_i, 1))
            s_i = s_i + gl.sum(p, axis=1)
            acc = mma_v2(gl.convert_layout(p.to(gl.float16), OPERAND_A), v, acc)

        g_out = gl.arange(0, 16, layout=gl.SliceLayout(1, MMA))
        rows = (kv * n_chunks + c) * group + g_out
        kept = g_out < group
        gl.store(m_ptr + rows, m_i, mask=kept)
        gl.store(s_ptr + rows, s_i, mask=kept)
        n = gl.expand_dims(gl.arange(0, D, layout=gl.SliceLayout(0, MMA)), 0)
        gl.store(acc_ptr + gl.expand_dims(rows, 1) * D + 16 * (n % 8) + n // 8, acc,
                 mask=gl.expand_dims(kept, 1))
