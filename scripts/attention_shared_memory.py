"""Shared memory of the decode attention's chunk kernel, compiled for a GPU target without a GPU:
what Triton counts for each tiling over a float cache, beside `kernels.shared_memory_needed`'s
estimate, which `kernels.fit_shared_memory` keeps under the GPU's limit.

    python scripts/attention_shared_memory.py [--arch 90] [--head-dim 128,256] [--dtype bf16,fp32]
        [--tilings 64,3 32,3 ...]   (keys a step, pipeline stages)
"""

from __future__ import annotations

import argparse
import inspect
import itertools

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from llamatp import kernels
from llamatp.kernels import AttentionTiling

POINTERS = ("q_ptr", "k_ptr", "ks_ptr", "v_ptr", "vs_ptr", "pos_ptr", "m_ptr", "s_ptr", "acc_ptr")
DIVISIBLE = ("kc_s0", "kc_s1", "ks_s0", "vc_s0", "vc_s1", "vs_s0")  # as the cache's strides are at launch


def shared_memory(dtype: str, head_dim: int, block_n: int, num_stages: int, arch: int) -> int:
    """Bytes of shared memory Triton gives one program over a float cache of `dtype` values."""
    fn = kernels._decode_attention_chunk
    names = list(inspect.signature(fn.fn).parameters)
    values = getattr(tl, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype])
    consts = dict(K_CODES="float", V_CODES="float", K_DTYPE=values, V_DTYPE=values, BLOCK_G=16, BLOCK_N=block_n,
                  HEAD_DIM=head_dim, KEYS_MAJOR=False, TMA=False, EMULATE=False, EARLY=True)
    types = {n: "*fp32" for n in ("m_ptr", "s_ptr", "acc_ptr")} | {"q_ptr": "*bf16", "pos_ptr": "*i64"}
    types |= {n: f"*{dtype}" for n in ("k_ptr", "ks_ptr", "v_ptr", "vs_ptr", "k_desc", "v_desc")}
    types["scale_log2"] = "fp32"
    signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in POINTERS + DIVISIBLE}
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs),
                              target=GPUTarget("cuda", arch, 32), options=dict(num_warps=4, num_stages=num_stages))
    return compiled.metadata.shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--head-dim", default="128,256")
    parser.add_argument("--dtype", default="bf16,fp32")
    parser.add_argument("--tilings", nargs="*", default=["64,3", "64,2", "32,3", "32,2"])
    args = parser.parse_args()
    for dtype, head_dim, tiling in itertools.product(args.dtype.split(","), map(int, args.head_dim.split(",")),
                                                     args.tilings):
        block_n, num_stages = map(int, tiling.split(","))
        counted = shared_memory(dtype, head_dim, block_n, num_stages, args.arch)
        estimate = kernels.shared_memory_needed(AttentionTiling(block_n, 1, 4, num_stages), head_dim,
                                                4 if dtype == "fp32" else 2)
        print(f"{dtype} head {head_dim}, {block_n} keys, {num_stages} stages: {counted} bytes by Triton "
              f"{triton.__version__} for sm_{args.arch}, estimated {estimate:.0f}")


if __name__ == "__main__":
    main()
