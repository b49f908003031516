"""Decode attention over a q4_0 cache in the tensor cores' registers (`q4_attention`): what it
computes (on a CUDA GPU) and that its loop over keys compiles without shared memory or barriers
(anywhere Triton is)."""

import os
import re
import subprocess
import sys

import pytest
import torch

from llamatp import kernels, q4_attention
from llamatp.kernels import _CODES_TILING
from llamatp.kv_cache import QUANTIZERS, CacheTensor

needs_gluon = pytest.mark.skipif(q4_attention.gluon is None, reason="needs Triton with Gluon")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# Compiled in a process of its own: tests/conftest.py runs this one under Triton's interpreter.
COMPILE_FOR_HOPPER = """
import inspect, sys, triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from llamatp import q4_attention
fn = q4_attention._attention_chunk
names = list(inspect.signature(fn.fn).parameters)
pointers = dict(q_ptr="*bf16", k_ptr="*u8", ks_ptr="*fp16", v_ptr="*u8", vs_ptr="*fp16", pos_ptr="*i64",
                m_ptr="*fp32", s_ptr="*fp32", acc_ptr="*fp32", scale_log2="fp32")
signature = {n: "constexpr" if n == "EARLY" else pointers.get(n, "i32") for n in names}
aligned = [n for n in names if signature[n].startswith("*") or n in ("kc_s0", "kc_s1", "vc_s0", "vc_s1")]
source = GluonASTSource(fn=fn, signature=signature, constexprs={"EARLY": True},
                        attrs={(names.index(n),): [["tt.divisibility", 16]] for n in aligned})
compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=q4_attention.WARPS))
sys.stdout.write(compiled.asm["ptx"])
"""


@needs_gluon
def test_its_loop_compiles_for_hopper_with_no_shared_memory_and_no_barrier() -> None:
    """Codes go from the loads to the tensor cores through registers only, and each warp runs its
    own softmax: the compiled loop over keys touches no shared memory and waits at no barrier
    (the warps meet once, after it)."""
    env = dict(os.environ, TRITON_INTERPRET="0")
    ptx = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    first_mma = ptx.index("mma.sync")
    back = re.search(r"bra\s+(\$L__BB\d+_\d+);", ptx[first_mma:])  # the loop's branch back
    loop = ptx[ptx.index(back.group(1) + ":"):first_mma + back.end()]
    assert loop.count("mma.sync.aligned.m16n8k16") == 64  # 32 keys: 32 for the scores, 32 for the values
    assert "bar.sync" not in loop and "ld.shared" not in loop and "st.shared" not in loop
    assert "ld.global.v4.b32" in loop  # a K block's 16 bytes of codes in one load


def q4_cache(n_kv: int, n_ctx: int, g: torch.Generator) -> CacheTensor:
    values = torch.randn(n_kv, n_ctx, q4_attention.HEAD_DIM, generator=g, device="cuda")
    return CacheTensor(*QUANTIZERS["q4_0"][0](values))


@needs_gluon
@needs_gpu
@pytest.mark.parametrize("n_kv, group", [(8, 4), (4, 4), (2, 8), (1, 1), (3, 16)])
@pytest.mark.parametrize("pos, window", [(0, 0), (31, 0), (32, 0), (33, 0), (1000, 0), (8191, 0), (5000, 1024)])
def test_matches_torch_and_the_triton_kernel(n_kv: int, group: int, pos: int, window: int) -> None:
    """Any number of keys (one, a block and one more, a partial last block), any group up to 16,
    a sliding window; slots past the query (NaN scales) never read."""
    g = torch.Generator(device="cuda").manual_seed(pos + 10 * group)
    q = torch.randn(n_kv, group, q4_attention.HEAD_DIM, generator=g, device="cuda", dtype=torch.bfloat16)
    k_cache, v_cache = q4_cache(n_kv, 8192, g), q4_cache(n_kv, 8192, g)
    p = torch.tensor([pos], device="cuda")
    assert q4_attention.usable(q, k_cache, v_cache)
    ref = kernels.decode_attention_torch(q.float(), k_cache, v_cache, p, window, 0.088)
    k_cache.scale[:, pos + 1:] = float("nan")
    v_cache.scale[:, pos + 1:] = float("nan")
    fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, window, 0.088)
    triton_kernel = kernels.decode_attention_triton(q, k_cache, v_cache, p, window, 0.088, tiling=_CODES_TILING)
    torch.testing.assert_close(fast.float(), ref, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(fast, triton_kernel, rtol=2e-2, atol=2e-3)


@needs_gluon
@needs_gpu
def test_large_scores_keep_the_softmax_exact() -> None:
    """Queries that make scores of hundreds, rising along the context: the running maximum in use
    moves many times, and the result still matches torch."""
    g = torch.Generator(device="cuda").manual_seed(1)
    n_kv, group, pos = 2, 4, 4000
    q = 30 * torch.randn(n_kv, group, q4_attention.HEAD_DIM, generator=g, device="cuda").bfloat16()
    values = torch.randn(n_kv, 8192, q4_attention.HEAD_DIM, generator=g, device="cuda")
    values *= torch.linspace(0.1, 2.0, 8192, device="cuda")[None, :, None]
    k_cache, v_cache = CacheTensor(*QUANTIZERS["q4_0"][0](values)), q4_cache(n_kv, 8192, g)
    p = torch.tensor([pos], device="cuda")
    ref = kernels.decode_attention_torch(q.float(), k_cache, v_cache, p, 0, 0.088)
    fast = kernels.decode_attention_triton(q, k_cache, v_cache, p, 0, 0.088)
    torch.testing.assert_close(fast.float(), ref, rtol=2e-2, atol=2e-3)
