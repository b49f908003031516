"""`llamatp info`: what a GGUF file holds, without loading its weights."""

from __future__ import annotations

from collections import Counter, defaultdict

from llamatp.config import SUPPORTED_ARCHITECTURES, load_config
from llamatp.gguf_file import GGUFFile
from llamatp.plan import format_bytes


def tensor_kind(name: str) -> str:
    """'blk.3.attn_q.weight' -> 'attn_q'; 'token_embd.weight' -> 'token_embd'."""
    parts = name.split(".")
    return parts[2] if parts[0] == "blk" and len(parts) > 2 else parts[0]


def describe_model(path: str) -> list[str]:
    gguf = GGUFFile(path)
    arch = gguf.architecture
    n_params = sum(t.n_elements for t in gguf.tensors.values())
    size = sum(t.nbytes for t in gguf.tensors.values())
    lines = [
        f"file:          {gguf.path}",
        f"name:          {gguf.get('general.name', '-')}",
        f"architecture:  {arch}" + ("" if arch in SUPPORTED_ARCHITECTURES else " (not supported for running)"),
        f"parameters:    {n_params / 1e9:.3f} B" if n_params >= 1e9 else f"parameters:    {n_params / 1e6:.1f} M",
        f"size:          {format_bytes(size)} ({8 * size / max(n_params, 1):.2f} bits per weight)",
    ]
    if arch in SUPPORTED_ARCHITECTURES:
        c = load_config(gguf)
        lines += [
            f"context:       {c.n_ctx_train} (trained)",
            f"shape:         n_embd {c.n_embd}, n_layer {c.n_layer}, n_head {c.n_head}, n_head_kv {c.n_head_kv}, "
            f"head_dim {c.head_dim}, n_ff {c.n_ff}, n_vocab {c.n_vocab}",
        ]
    model = gguf.get("tokenizer.ggml.model")
    tokens = gguf.get("tokenizer.ggml.tokens") or []
    lines.append(f"tokenizer:     {model or 'none'} ({len(tokens)} tokens, pre '{gguf.get('tokenizer.ggml.pre', 'default')}')")
    lines.append(f"chat template: {'present' if gguf.get('tokenizer.chat_template') else 'absent'}")
    types: dict[str, Counter[str]] = defaultdict(Counter)
    for t in gguf.tensors.values():
        types[tensor_kind(t.name)][t.qtype.name] += 1
    lines.append("tensor types:")
    for kind, counts in sorted(types.items()):
        lines.append(f"  {kind:<20} " + ", ".join(f"{name} x{n}" for name, n in sorted(counts.items())))
    return lines
