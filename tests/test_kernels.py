"""The fused GPU kernels compute what their plain-torch twins compute (Triton's interpreter on CPU)."""

import contextlib
import dataclasses
import os

import pytest
import torch

from llamatp import kernels
from llamatp.errors import LlamatpError
from llamatp.kernels import AttentionTiling
from llamatp.kv_cache import QUANTIZERS, CacheTensor, unpack_q4

pytestmark = pytest.mark.skipif(kernels.triton is None or os.environ.get("TRITON_INTERPRET") != "1",
                                reason="needs triton's interpreter (tests/conftest.py turns it on)")


@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("width", [64, 100])
def test_add_rms_norm_matches_torch(with_residual: bool, width: int) -> None:
    g = torch.Generator().manual_seed(width)
    x = torch.randn(3, width, generator=g)
    residual = torch.randn(3, width, generator=g) if with_residual else None
    weight = torch.rand(width, generator=g) + 0.5
    out, total = kernels.add_rms_norm_triton(x, residual, weight, 1e-6)
    ref_out, ref_total = kernels.add_rms_norm_torch(x, residual, weight, 1e-6)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, ref_total)


def assert_rounded_for_gemv(rounded: object, values: torch.Tensor) -> None:
    """A producer's rounding of its output is exactly the GEMV's own (`quantize_rows`)."""
    from llamatp.quant.gemv import quantize_rows

    expected = quantize_rows(values)
    assert torch.equal(rounded.words, expected.words) and torch.equal(rounded.meta, expected.meta)


@pytest.mark.parametrize("width", [64, 96])
def test_add_rms_norm_rounds_its_output_for_a_gemv(width: int) -> None:
    from llamatp.quant.gemv import QuantizedRows

    g = torch.Generator().manual_seed(width)
    x, residual = torch.randn(2, width, generator=g), torch.randn(2, width, generator=g)
    rounded = QuantizedRows.empty(2, width, x.device)
    out, _ = kernels.add_rms_norm_triton(x, residual, torch.rand(width, generator=g) + 0.5, 1e-6, rounded)
    assert_rounded_for_gemv(rounded, out)


def empty_cache(n_kv: int, n_ctx: int, hd: int, cache_type: str) -> CacheTensor:
    """A cache whose every slot is marked unwritten: NaN values, or NaN scales."""
    nan_scales = torch.full((n_kv, n_ctx, hd // 32), float("nan"), dtype=torch.float16)
    if cache_type == "q8_0":
        return CacheTensor(torch.full((n_kv, n_ctx, hd), -128, dtype=torch.int8), nan_scales)
    if cache_type == "q4_0":
        return CacheTensor(torch.full((n_kv, n_ctx, hd // 2), 0xFF, dtype=torch.uint8), nan_scales)
    return CacheTensor(torch.full((n_kv, n_ctx, hd), float("nan")))


def codes(cache: CacheTensor) -> torch.Tensor:
    return unpack_q4(cache.data) if cache.type == "q4_0" else cache.data.int()


@pytest.mark.parametrize("cache_type", ["f32", "q8_0", "q4_0"])
@pytest.mark.parametrize("neox", [False, True])
def test_rope_store_kv_matches_torch(neox: bool, cache_type: str) -> None:
    g = torch.Generator().manual_seed(1)
    T, n_q, n_kv, hd, n_ctx = 3, 4, 2, 64, 10
    qkv = torch.randn(T, (n_q + 2 * n_kv) * hd, generator=g)
    q, k, v = qkv.split([n_q * hd, n_kv * hd, n_kv * hd], dim=-1)
    q, k, v = q.view(T, n_q, hd), k.view(T, n_kv, hd), v.view(T, n_kv, hd)
    pos = torch.tensor([4, 5, 6])
    inv_freq = torch.rand(hd // 2, generator=g)
    fast_k, fast_v, ref_k, ref_v = (empty_cache(n_kv, n_ctx, hd, cache_type) for _ in range(4))
    q_fast = kernels.rope_store_kv_triton(q, k, v, inv_freq, neox, fast_k, fast_v, pos)
    q_ref = kernels.rope_store_kv_torch(q, k, v, inv_freq, neox, ref_k, ref_v, pos)
    torch.testing.assert_close(q_fast, q_ref, rtol=1e-5, atol=1e-6)
    for fast, ref in ((fast_k, ref_k), (fast_v, ref_v)):
        if cache_type != "f32":
            # The rotation rounds differently in the last bit, which may move a code by one step.
            fast_codes, ref_codes = codes(fast)[:, 4:7], codes(ref)[:, 4:7]
            assert (fast_codes - ref_codes).abs().max() <= 1
            assert (fast_codes == ref_codes).float().mean() > 0.99
            torch.testing.assert_close(fast.scale[:, 4:7], ref.scale[:, 4:7])
            untouched = fast.scale[:, [0, 1, 2, 3, 7, 8, 9]]
        else:
            torch.testing.assert_close(fast.data[:, 4:7], ref.data[:, 4:7], rtol=1e-5, atol=1e-6)
            untouched = fast.data[:, [0, 1, 2, 3, 7, 8, 9]]
        assert untouched.isnan().all()  # nothing else written


@pytest.mark.parametrize("gelu", [False, True])
def test_gated_act_matches_torch(gelu: bool) -> None:
    gate_up = torch.randn(2, 2 * 1500, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(kernels.gated_act_triton(gate_up, gelu), kernels.gated_act_torch(gate_up, gelu),
                               rtol=1e-5, atol=1e-6)


def test_gated_act_rounds_its_output_for_a_gemv() -> None:
    from llamatp.quant.gemv import QuantizedRows

    width = 1088  # 34 blocks of 32: two programs of 1024 values, the second partly filled
    gate_up = torch.randn(2, 2 * width, generator=torch.Generator().manual_seed(3))
    rounded = QuantizedRows.empty(2, width, gate_up.device)
    out = kernels.gated_act_triton(gate_up, False, rounded)
    assert_rounded_for_gemv(rounded, out)


def filled_cache(n_kv: int, n_ctx: int, hd: int, cache_type: str, g: torch.Generator) -> CacheTensor:
    values = torch.randn(n_kv, n_ctx, hd, generator=g)
    return CacheTensor(*QUANTIZERS[cache_type][0](values)) if cache_type in QUANTIZERS else CacheTensor(values)


# On the CPU a "multiprocessor" is the whole machine: 16 programs over 2 KV heads make 8 chunks.
MANY_CHUNKS = AttentionTiling(block_n=16, programs_per_sm=16, num_warps=4)


@pytest.mark.parametrize("pos, window, n_ctx", [(0, 0, 160), (5, 0, 160), (37, 0, 160), (130, 0, 160),
                                               (130, 20, 160), (1500, 0, 1600), (1500, 300, 1600), (100, 0, 1600)])
@pytest.mark.parametrize("tma, preload_blocks, long_context", [
    (False, 0, False), (True, 0, False), (False, 1, False), (True, 1, False), (False, 4, False),
    (False, 1, True), (False, 4, True), (True, 4, True)])
def test_decode_attention_matches_torch(pos: int, window: int, n_ctx: int, tma: bool, preload_blocks: int,
                                        long_context: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The visible keys are cut into 8 chunks of blocks of 16, merged afterwards: with fewer
    keys than chunks, some chunks hold none; slots past the query are never read. Through TMA
    descriptors (chunks of two blocks or more: here from 256 visible keys on) whole blocks up
    to the query come that way and the rest as before. Preloaded, a chunk's first blocks are
    read before the kernel waits for the one before it: in long-context steps as far as they lie
    before the query, otherwise only all of them, where more of the chunk follows."""
    monkeypatch.delenv("LLAMATP_ATTENTION_OVERLAP", raising=False)
    if tma and kernels.TensorDescriptor is None:
        pytest.skip("this Triton has no host-side TMA descriptors")
    g = torch.Generator().manual_seed(pos)
    n_kv, group, hd = 2, 4, 16
    q = torch.randn(n_kv, group, hd, generator=g)
    k_cache, v_cache = filled_cache(n_kv, n_ctx, hd, "f32", g), filled_cache(n_kv, n_ctx, hd, "f32", g)
    p = torch.tensor([pos])
    ref = kernels.decode_attention_torch(q, k_cache, v_cache, p, window, 0.25)
    k_cache.data[:, pos + 1 :] = float("nan")
    v_cache.data[:, pos + 1 :] = float("nan")
    with kernels.long_context_decode() if long_context else contextlib.nullcontext():
        fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, window, 0.25, tiling=MANY_CHUNKS, tma=tma,
                                               preload_blocks=preload_blocks)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)


def test_a_float_cache_takes_its_many_heads_tiling_from_four_kv_heads_on() -> None:
    values, codes = (filled_cache(1, 8, 32, cache_type, torch.Generator()) for cache_type in ("f32", "q8_0"))
    assert kernels.decode_tiling(values, values, 4) == kernels.FLOAT_TILING_MANY_HEADS
    assert kernels.decode_tiling(values, values, 8) == kernels.FLOAT_TILING_MANY_HEADS
    assert kernels.decode_tiling(values, values, 2) == kernels.DECODE_TILINGS["float"]
    assert kernels.decode_tiling(codes, values, 8) == kernels.DECODE_TILINGS["q8_0"]


def test_llamatp_attention_tiling_overrides_every_caches_tiling(monkeypatch: pytest.MonkeyPatch) -> None:
    values, codes = (filled_cache(1, 8, 32, cache_type, torch.Generator()) for cache_type in ("f32", "q4_0"))
    monkeypatch.setenv("LLAMATP_ATTENTION_TILING", "64,2,4,1,1")
    chosen = AttentionTiling(block_n=64, programs_per_sm=2, num_warps=4, num_stages=1, keys_major=True)
    assert kernels.decode_tiling(values, values, 2) == chosen
    assert kernels.decode_tiling(codes, codes, 8) == chosen


def test_a_short_context_step_reads_early_only_a_q4_0_chunks_first_block(monkeypatch: pytest.MonkeyPatch) -> None:
    f32, q8, q4 = (filled_cache(1, 8, 32, cache_type, torch.Generator()) for cache_type in ("f32", "q8_0", "q4_0"))
    monkeypatch.delenv("LLAMATP_ATTENTION_PRELOAD", raising=False)
    monkeypatch.delenv("LLAMATP_ATTENTION_OVERLAP", raising=False)
    assert kernels.blocks_read_early(q4, q4, chunks_span_blocks=True) == 1
    assert kernels.blocks_read_early(q4, q4, chunks_span_blocks=False) == 0
    assert not any(kernels.blocks_read_early(k, v, True) for k, v in ((f32, f32), (q8, q8), (q4, q8), (q4, f32)))
    assert not kernels.attention_during_gemv()


def test_a_long_context_step_launches_attention_during_the_gemv_and_reads_more_early(
        monkeypatch: pytest.MonkeyPatch) -> None:
    f32, q8, q4 = (filled_cache(1, 8, 32, cache_type, torch.Generator()) for cache_type in ("f32", "q8_0", "q4_0"))
    monkeypatch.delenv("LLAMATP_ATTENTION_PRELOAD", raising=False)
    monkeypatch.delenv("LLAMATP_ATTENTION_OVERLAP", raising=False)
    with kernels.long_context_decode():
        assert kernels.attention_during_gemv()
        assert kernels.blocks_read_early(f32, f32, chunks_span_blocks=False) == 4
        assert kernels.blocks_read_early(q8, q8, False) == kernels.blocks_read_early(q4, q4, False) == 1
    assert not kernels.attention_during_gemv()


def test_llamatp_attention_overlap_and_preload_set_one_launch_for_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    f32, q4 = (filled_cache(1, 8, 32, cache_type, torch.Generator()) for cache_type in ("f32", "q4_0"))
    monkeypatch.setenv("LLAMATP_ATTENTION_OVERLAP", "1")
    assert kernels.attention_during_gemv()
    assert kernels.long_context_from(1, f32, f32, n_sm=132) is None
    monkeypatch.setenv("LLAMATP_ATTENTION_OVERLAP", "0")
    with kernels.long_context_decode():
        assert not kernels.attention_during_gemv()
    monkeypatch.setenv("LLAMATP_ATTENTION_PRELOAD", "4")
    assert kernels.blocks_read_early(f32, f32, False) == 4
    monkeypatch.setenv("LLAMATP_ATTENTION_PRELOAD", "0")
    assert kernels.blocks_read_early(q4, q4, True) == 0
    monkeypatch.setenv("LLAMATP_ATTENTION_PRELOAD", "3")
    with pytest.raises(LlamatpError, match="LLAMATP_ATTENTION_PRELOAD='3'"):
        kernels.blocks_read_early(q4, q4, True)


@pytest.mark.parametrize("n_ctx", [1024, 8192, 32768])
def test_long_context_steps_start_where_each_chunk_of_a_deep_cache_holds_16_kib_of_keys_and_values(
        monkeypatch: pytest.MonkeyPatch, n_ctx: int) -> None:
    """Llama-3 8B over two GPUs of 132 multiprocessors: 4 KV heads of 128 values, 2 programs a
    multiprocessor, 66 chunks of a deep cache; a position of a head takes 512 bytes of bf16 keys
    and values. The cache's own length does not move it (a short cache would have few chunks)."""
    monkeypatch.delenv("LLAMATP_ATTENTION_OVERLAP", raising=False)
    monkeypatch.delenv("LLAMATP_ATTENTION_TILING", raising=False)
    cache = CacheTensor(torch.zeros(4, n_ctx, 128, dtype=torch.bfloat16))
    assert kernels.long_context_from(4, cache, cache, n_sm=132) == 66 * 32


def test_steps_over_q8_0_codes_run_as_long_context_steps_where_each_chunk_holds_more_than_a_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Llama-3 8B on one GPU of 132 multiprocessors: 8 KV heads, 33 chunks of 128-key blocks.
    Steps over q4_0 codes keep one launch."""
    monkeypatch.delenv("LLAMATP_ATTENTION_OVERLAP", raising=False)
    monkeypatch.delenv("LLAMATP_ATTENTION_TILING", raising=False)
    f32, q8, q4 = (filled_cache(8, 256, 128, cache_type, torch.Generator()) for cache_type in ("f32", "q8_0", "q4_0"))
    assert kernels.long_context_from(8, q8, q8, n_sm=132) == kernels.long_context_from(8, f32, q8, 132) == 33 * 128
    assert all(kernels.long_context_from(8, k, v, n_sm=132) is None for k, v in ((q4, q4), (q8, q4), (f32, q4)))


@pytest.mark.parametrize("text", ["64,2,4", "64,2,4,1,x", "48,2,4,1,0", "64,0,4,1,0", "64,2,3,1,0", "64,2,4,1,2"])
def test_a_malformed_llamatp_attention_tiling_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                                     text: str) -> None:
    values = filled_cache(1, 8, 32, "f32", torch.Generator())
    monkeypatch.setenv("LLAMATP_ATTENTION_TILING", text)
    with pytest.raises(LlamatpError, match=f"LLAMATP_ATTENTION_TILING='{text}'"):
        kernels.decode_tiling(values, values, 2)


def test_a_tiling_too_large_for_shared_memory_keeps_fewer_keys_in_flight() -> None:
    h100 = 232448  # bytes a program may take
    chosen = kernels.DECODE_TILINGS["float"]  # 64 keys a step, three stages
    assert kernels.fit_shared_memory(chosen, 128, 2, h100) == chosen
    f32_256 = kernels.fit_shared_memory(chosen, 256, 4, h100)
    assert (f32_256.block_n, f32_256.num_stages) == (64, 2)
    small = kernels.fit_shared_memory(chosen, 256, 4, 48 * 1024)
    assert (small.block_n, small.num_stages) == (16, 1)


@pytest.mark.parametrize("n_kv", [2, 4])
def test_decode_attention_with_its_default_tiling_matches_torch(n_kv: int) -> None:
    g = torch.Generator().manual_seed(n_kv)
    group, hd, n_ctx, pos = 2, 32, 200, 150
    q = torch.randn(n_kv, group, hd, generator=g)
    k_cache, v_cache = filled_cache(n_kv, n_ctx, hd, "f32", g), filled_cache(n_kv, n_ctx, hd, "f32", g)
    p = torch.tensor([pos])
    fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, 0, 0.25)
    torch.testing.assert_close(fast, kernels.decode_attention_torch(q, k_cache, v_cache, p, 0, 0.25),
                               rtol=1e-4, atol=1e-5)


def test_decode_attention_merges_more_chunks_than_one_round_of_loads() -> None:
    """The merge reads 128 chunks at a time under a running maximum; 200 chunks take two rounds,
    and keys that grow along the context put the largest score in the second."""
    g = torch.Generator().manual_seed(3)
    n_kv, group, hd, n_ctx, pos = 1, 2, 32, 3300, 3250
    q = torch.randn(n_kv, group, hd, generator=g)
    k_cache, v_cache = filled_cache(n_kv, n_ctx, hd, "f32", g), filled_cache(n_kv, n_ctx, hd, "f32", g)
    k_cache.data *= torch.linspace(0.1, 1.0, n_ctx)[None, :, None]
    p = torch.tensor([pos])
    tiling = AttentionTiling(block_n=16, programs_per_sm=200, num_warps=4)
    fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, 0, 0.5, tiling=tiling)
    ref = kernels.decode_attention_torch(q, k_cache, v_cache, p, 0, 0.5)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("type_k, type_v", [("q8_0", "q8_0"), ("q8_0", "f32"), ("f32", "q8_0"),
                                            ("q4_0", "q4_0"), ("q4_0", "f32"), ("f32", "q4_0"), ("q8_0", "q4_0")])
@pytest.mark.parametrize("keys_major", [False, True])
def test_decode_attention_reads_a_quantized_cache_as_torch_does(type_k: str, type_v: str, keys_major: bool) -> None:
    """Codes times scales, per block of 32 values of a head (two blocks here), multiplied in f16
    (the query too), so they agree with torch's f32 to f16's precision. No slot past the query is
    read; K and V may hold different types, of different strides. Keys or query heads as the
    rows of the products, the result is the same."""
    g = torch.Generator().manual_seed(7)
    n_kv, group, hd, n_ctx, pos = 2, 3, 64, 300, 250
    q = torch.randn(n_kv, group, hd, generator=g)
    k_cache, v_cache = filled_cache(n_kv, n_ctx, hd, type_k, g), filled_cache(n_kv, n_ctx, hd, type_v, g)
    p = torch.tensor([pos])
    ref = kernels.decode_attention_torch(q, k_cache, v_cache, p, 0, 0.125)
    for c in (k_cache, v_cache):
        (c.scale if c.scale is not None else c.data)[:, pos + 1 :] = float("nan")
    tiling = dataclasses.replace(MANY_CHUNKS, keys_major=keys_major)
    fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, 0, 0.125, tiling=tiling)
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=3e-4)


def test_decode_attention_rounds_its_output_for_a_gemv() -> None:
    from llamatp.quant.gemv import QuantizedRows

    g = torch.Generator().manual_seed(5)
    n_kv, group, hd, n_ctx = 2, 3, 64, 300
    q = torch.randn(n_kv, group, hd, generator=g)
    k_cache, v_cache = filled_cache(n_kv, n_ctx, hd, "f32", g), filled_cache(n_kv, n_ctx, hd, "f32", g)
    rounded = QuantizedRows.empty(1, n_kv * group * hd, q.device)
    out = kernels.decode_attention_triton(q, k_cache, v_cache, torch.tensor([280]), 0, 0.125, rounded)
    assert_rounded_for_gemv(rounded, out.reshape(1, -1))
