"""Model hyper-parameters read from GGUF metadata, with per-architecture differences as data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    norm_eps: float
    rope_base: float
    rope_scale: float  # positions are divided by this (linear RoPE scaling)
    rope_neox: bool  # rotate halves (NeoX) instead of adjacent pairs
    qkv_bias: bool
    qk_norm: bool
    post_norms: bool  # gemma3: norms after attention and FFN outputs
    gelu: bool  # gemma3: GELU(tanh) gate; otherwise SiLU
    embed_scale: float  # gemma3: sqrt(n_embd)
    attn_scale: float
    sliding_window: int  # 0: no sliding-window layers
    swa_pattern: int  # every swa_pattern-th layer is global; others use the window
    rope_base_swa: float
    tied_embeddings: bool  # no output.weight: the head reads token_embd

    def is_swa_layer(self, layer: int) -> bool:
        return self.sliding_window > 0 and (layer + 1) % self.swa_pattern != 0

    @property
    def n_group(self) -> int:
        """Query heads per KV head."""
        return self.n_head // self.n_head_kv


def load_config(gguf: GGUFFile) -> ModelConfig:
    arch = gguf.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise LlamatpError(
            f"architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    gemma = arch == "gemma3"
    n_layer = gguf.integer(f"{arch}.block_count")
    n_embd = gguf.integer(f"{arch}.embedding_length")
    n_head = gguf.integer(f"{arch}.attention.head_count", layers=n_layer)
    n_head_kv = gguf.integer(f"{arch}.attention.head_count_kv", n_head, layers=n_layer)
    if n_head % n_head_kv:
        raise LlamatpError(f"{gguf.path}: metadata {arch}.attention.head_count {n_head} is not a multiple of "
                           f"{arch}.attention.head_count_kv {n_head_kv}")
    head_dim = gguf.integer(f"{arch}.attention.key_length", n_embd // n_head)
    if head_dim % 2:
        raise LlamatpError(f"{gguf.path}: metadata {arch}.attention.key_length: head size {head_dim} is odd; "
                           "RoPE rotates pairs")
    n_rot = gguf.integer(f"{arch}.rope.dimension_count", head_dim)
    if n_rot != head_dim:
        raise LlamatpError(f"{gguf.path}: metadata {arch}.rope.dimension_count {n_rot} differs from "
                           f"{arch}.attention.key_length {head_dim}: RoPE over part of a head is not supported")
    rope_base = gguf.number(f"{arch}.rope.freq_base", 10000.0)
    rope_scale = 1.0
    if gguf.string(f"{arch}.rope.scaling.type", "none") == "linear":
        rope_scale = gguf.number(f"{arch}.rope.scaling.factor", 1.0)
    attn_scale = 1.0 / math.sqrt(head_dim)
    if gemma and n_layer == 62:  # Gemma 3 27B scales by n_embd / n_head, as llama.cpp does
        attn_scale = 1.0 / math.sqrt(n_embd / n_head)
    return ModelConfig(
        arch=arch,
        n_vocab=_vocab_size(gguf, arch),
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_ff=gguf.integer(f"{arch}.feed_forward_length", layers=n_layer),
        n_ctx_train=gguf.integer(f"{arch}.context_length", 4096),
        norm_eps=gguf.number(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5),
        rope_base=rope_base,
        rope_scale=rope_scale,
        rope_neox=arch != "llama",
        qkv_bias=arch == "qwen2",
        qk_norm=arch in ("qwen3", "gemma3"),
        post_norms=gemma,
        gelu=gemma,
        embed_scale=math.sqrt(n_embd) if gemma else 1.0,
        attn_scale=attn_scale,
        sliding_window=gguf.integer(f"{arch}.attention.sliding_window", 0, positive=False) if gemma else 0,
        swa_pattern=6,
        rope_base_swa=10000.0 if gemma else rope_base,
        tied_embeddings="output.weight" not in gguf.tensors,
    )


def _vocab_size(gguf: GGUFFile, arch: str) -> int:
    if "token_embd.weight" in gguf.tensors:
        return gguf.tensors["token_embd.weight"].shape[0]
    tokens = gguf.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list):
        return len(tokens)
    return gguf.integer(f"{arch}.vocab_size", 0, positive=False)


class _Dim(NamedTuple):
    size: int
    source: str  # the metadata it comes from, for the error message


def check_tensor_shapes(gguf: GGUFFile, config: ModelConfig) -> None:
    """Fail, naming the tensor and the metadata, where a tensor the model reads has another shape
    than the metadata implies; otherwise the contradiction surfaces deep inside a matmul."""
    a, c = config.arch, config
    head = (f"{a}.attention.key_length {c.head_dim}" if f"{a}.attention.key_length" in gguf.metadata
            else f"head size {c.head_dim} ({a}.embedding_length / {a}.attention.head_count)")
    hd = _Dim(c.head_dim, head)
    embd = _Dim(c.n_embd, f"{a}.embedding_length {c.n_embd}")
    q = _Dim(c.n_head * c.head_dim, f"{a}.attention.head_count {c.n_head} x {head}")
    kv = _Dim(c.n_head_kv * c.head_dim, f"{a}.attention.head_count_kv {c.n_head_kv} x {head}")
    ff = _Dim(c.n_ff, f"{a}.feed_forward_length {c.n_ff}")
    vocab = _Dim(c.n_vocab, f"the {c.n_vocab} rows of token_embd.weight")
    # Shapes in torch order (rows, cols), by name, or by the name after "blk.N." in a layer.
    expected = {
        "token_embd.weight": (vocab, embd), "output.weight": (vocab, embd), "output_norm.weight": (embd,),
        "rope_freqs.weight": (_Dim(c.head_dim // 2, f"half of {head}"),),
        "attn_norm.weight": (embd,), "ffn_norm.weight": (embd,),
        "post_attention_norm.weight": (embd,), "post_ffw_norm.weight": (embd,),
        "attn_q.weight": (q, embd), "attn_k.weight": (kv, embd), "attn_v.weight": (kv, embd),
        "attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,),
        "attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,), "attn_output.weight": (embd, q),
        "ffn_gate.weight": (ff, embd), "ffn_up.weight": (ff, embd), "ffn_down.weight": (embd, ff),
    }  # fmt: skip
    for name, info in gguf.tensors.items():
        parts = name.split(".", 2)
        dims = expected.get(parts[2] if parts[0] == "blk" and len(parts) == 3 else name)
        if dims is None or info.shape == tuple(d.size for d in dims):
            continue
        culprits = [d.source for d, n in zip(dims, info.shape) if d.size != n] or [d.source for d in dims]
        raise LlamatpError(f"{gguf.path}: tensor {name} has shape {list(info.shape)}, "
                           f"expected {[d.size for d in dims]} from {' and '.join(dict.fromkeys(culprits))}")
