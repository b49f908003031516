"""Shared memory and registers of the decode attention's chunk kernel, compiled for a GPU target
without a GPU: what Triton counts for each tiling, beside `kernels.shared_memory_needed`'s
estimate (float caches), which `kernels.fit_shared_memory` keeps under the GPU's limit, and, where
Triton's ptxas is there, the registers a thread and bytes spilled.

    python scripts/attention_shared_memory.py [--arch 90] [--head-dim 128,256] [--dtype bf16,fp32,q8_0]
        [--tilings 64,3 32,3 ...]   (keys a step, pipeline stages)
        [--preload BLOCKS] [--long-context] [--tma]   (as long-context steps: --preload 4 --long-context)
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import re
import subprocess
import tempfile

import triton
import triton.backends.nvidia
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from llamatp import kernels
from llamatp.kernels import AttentionTiling

POINTERS = ("q_ptr", "k_ptr", "ks_ptr", "v_ptr", "vs_ptr", "pos_ptr", "m_ptr", "s_ptr", "acc_ptr")
DIVISIBLE = ("kc_s0", "kc_s1", "ks_s0", "vc_s0", "vc_s1", "vs_s0")  # as the cache's strides are at launch
FLOATS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def compile_chunk(dtype: str, head_dim: int, block_n: int, num_stages: int, preload_blocks: int, long_context: bool,
                  tma: bool, arch: int) -> triton.compiler.CompiledKernel:
    """The chunk kernel over a cache of `dtype` (a float type or q8_0/q4_0 codes, keys as rows)."""
    fn = kernels._decode_attention_chunk
    names = list(inspect.signature(fn.fn).parameters)
    codes = dtype not in FLOATS
    values = tl.float16 if codes else getattr(tl, FLOATS[dtype])
    consts = dict(K_CODES=dtype if codes else "float", V_CODES=dtype if codes else "float", K_DTYPE=values,
                  V_DTYPE=values, BLOCK_G=16, BLOCK_N=block_n, HEAD_DIM=head_dim, KEYS_MAJOR=codes, TMA=tma,
                  PRELOAD_N=preload_blocks * block_n, PRELOAD_PARTIAL=long_context, EMULATE=False, EARLY=True)
    types = {n: "*fp32" for n in ("m_ptr", "s_ptr", "acc_ptr")} | {"q_ptr": "*bf16", "pos_ptr": "*i64"}
    data = "u8" if codes else dtype
    types |= {n: f"*{data}" for n in ("k_ptr", "v_ptr")}
    types |= {n: "*fp16" if codes else f"*{data}" for n in ("ks_ptr", "vs_ptr")}
    types |= {n: f"tensordesc<{data}[{block_n},{head_dim}]>" if tma else f"*{data}" for n in ("k_desc", "v_desc")}
    types["scale_log2"] = "fp32"
    signature = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in POINTERS + DIVISIBLE}
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32), options=dict(num_warps=4, num_stages=num_stages))


def registers(compiled: triton.compiler.CompiledKernel, arch: int) -> str:
    """Registers a thread and bytes spilled, as Triton's ptxas reports them; empty without it."""
    ptxas = os.path.join(os.path.dirname(triton.backends.nvidia.__file__), "bin", "ptxas")
    if not os.path.exists(ptxas):
        return ""
    with tempfile.TemporaryDirectory() as folder:
        ptx = os.path.join(folder, "kernel.ptx")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        report = subprocess.run([ptxas, f"-arch=sm_{arch}a", "-v", ptx, "-o", os.path.join(folder, "kernel.cubin")],
                                capture_output=True, text=True).stderr
    used, spilled = re.findall(r"Used (\d+) registers", report), re.findall(r"(\d+) bytes spill stores", report)
    return f", {used[0]} registers a thread, {spilled[0]} bytes spilled" if used and spilled else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--head-dim", default="128,256")
    parser.add_argument("--dtype", default="bf16,fp32")
    parser.add_argument("--tilings", nargs="*", default=["64,3", "64,2", "32,3", "32,2"])
    parser.add_argument("--preload", type=int, default=0, help="blocks read before the wait")
    parser.add_argument("--long-context", action="store_true", help="as long-context steps read them early")
    parser.add_argument("--tma", action="store_true", help="whole blocks of a 16-bit cache through TMA")
    args = parser.parse_args()
    for dtype, head_dim, tiling in itertools.product(args.dtype.split(","), map(int, args.head_dim.split(",")),
                                                     args.tilings):
        block_n, num_stages = map(int, tiling.split(","))
        compiled = compile_chunk(dtype, head_dim, block_n, num_stages, args.preload, args.long_context, args.tma,
                                 args.arch)
        line = (f"{dtype} head {head_dim}, {block_n} keys, {num_stages} stages: {compiled.metadata.shared} bytes "
                f"by Triton {triton.__version__} for sm_{args.arch}")
        if dtype in FLOATS:
            estimate = kernels.shared_memory_needed(AttentionTiling(block_n, 1, 4, num_stages), head_dim,
                                                    4 if dtype == "fp32" else 2)
            line += f", estimated {estimate:.0f}"
        print(line + registers(compiled, args.arch))


if __name__ == "__main__":
    main()
