"""Model hyper-parameters read from GGUF metadata, with per-architecture differences as data."""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def key(name: str, default: object = None) -> object:
        value = gguf.get(f"{arch}.{name}", default)
        if value is None:
            raise LlamatpError(f"{gguf.path} lacks metadata key '{arch}.{name}'")
        return value

    n_embd = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    n_head_kv = int(key("attention.head_count_kv", n_head))
    head_dim = int(key("attention.key_length", n_embd // max(n_head, 1)))
    n_vocab = _vocab_size(gguf, arch)
    if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
        raise LlamatpError(f"{gguf.path}: {n_head} heads cannot share {n_head_kv} KV heads evenly")
    gemma = arch == "gemma3"
    n_layer = int(key("block_count"))
    rope_scale = 1.0
    if gguf.get(f"{arch}.rope.scaling.type", "none") == "linear":
        rope_scale = float(key("rope.scaling.factor", 1.0))
    attn_scale = 1.0 / math.sqrt(head_dim)
    if gemma and n_layer == 62:  # Gemma 3 27B scales by n_embd / n_head, as llama.cpp does
        attn_scale = 1.0 / math.sqrt(n_embd / n_head)
    return ModelConfig(
        arch=arch,
        n_vocab=n_vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_ff=int(key("feed_forward_length")),
        n_ctx_train=int(key("context_length", 4096)),
        norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5)),
        rope_base=float(key("rope.freq_base", 10000.0)),
        rope_scale=rope_scale,
        rope_neox=arch != "llama",
        qkv_bias=arch == "qwen2",
        qk_norm=arch in ("qwen3", "gemma3"),
        post_norms=gemma,
        gelu=gemma,
        embed_scale=math.sqrt(n_embd) if gemma else 1.0,
        attn_scale=attn_scale,
        sliding_window=int(key("attention.sliding_window", 0)) if gemma else 0,
        swa_pattern=6,
        rope_base_swa=10000.0 if gemma else float(key("rope.freq_base", 10000.0)),
        tied_embeddings="output.weight" not in gguf.tensors,
    )


def _vocab_size(gguf: GGUFFile, arch: str) -> int:
    if "token_embd.weight" in gguf.tensors:
        return gguf.tensors["token_embd.weight"].shape[0]
    tokens = gguf.get("tokenizer.ggml.tokens")
    if tokens is not None:
        return len(tokens)
    return int(gguf.get(f"{arch}.vocab_size", 0))
