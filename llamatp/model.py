"""The transformer, as plain modules over one rank's shard.

One class serves llama, qwen2, qwen3 and gemma3: their differences are fields of
ModelConfig. Under tensor split a rank holds some query heads (and the KV heads they
read), some FFN columns and some vocabulary rows; the norm that adds a block's output to the
residual stream first sums it over ranks (`AddNorm`), or `all_reduce` does before a post norm.
Under layer split a rank holds whole layers and the embedding or head if it is first or last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from llamatp.config import ModelConfig
from llamatp.kernels import add_rms_norm, decode_attention, gated_act, long_context_from, rope_store_kv
from llamatp.kv_cache import CacheTensor, KVCache, attention_dtype
from llamatp.linear import Linear, StackedLinear, WeightSlice
from llamatp.quant.dequant import dequantize_to

if TYPE_CHECKING:
    from llamatp.quant.gemv import QuantizedRows

AllReduce = Callable[[torch.Tensor], torch.Tensor]
# (x, residual, weight, eps, rounded) -> (norm(x + residual) * weight, x + residual), x first
# summed over ranks where it is a partial output (`Comm.reduce_add_rms_norm`); residual may be None.
AddNorm = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, float, "QuantizedRows | None"],
                   tuple[torch.Tensor, torch.Tensor]]


def no_reduce(x: torch.Tensor) -> torch.Tensor:
    return x


class RMSNorm(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight = weight.float()
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None,
                rounded: QuantizedRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(x + residual), x + residual): the residual add rides along in the same kernel,
        and so does the rounding of the norm for the GEMVs that read it (`rounded`)."""
        return add_rms_norm(x, residual, self.weight, self.eps, rounded)


class VocabEmbedding(torch.nn.Module):
    """Rows [first, first + rows) of the token embedding, kept in GGUF blocks and looked up
    per token: on GPUs by one kernel (`gather_rows`) where the GEMV kernels read the type.

    `all_reduce` sums the rows over ranks under tensor split, where each rank holds a slice of
    the vocabulary. Without it a rank returns its own rows only, zeros for the tokens it
    lacks (`partial`), and the first block's norm sums them, as it sums a block's output.
    """

    def __init__(self, table: WeightSlice, first: int, scale: float, dtype: torch.dtype,
                 all_reduce: AllReduce | None) -> None:
        super().__init__()
        self.first, self.scale, self.dtype, self.all_reduce = first, scale, dtype, all_reduce
        self.qtype, self.n_rows = table.qtype, table.rows
        self.packed = table.packed()
        self.raw = table.raw if self.packed is None else None

    @property
    def partial(self) -> bool:
        return self.all_reduce is None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            from llamatp.quant.gemv import gather_rows

            x = gather_rows(self.packed, tokens, self.first, self.scale, self.dtype)
        else:
            assert self.raw is not None
            local = tokens - self.first
            held = (local >= 0) & (local < self.n_rows)
            rows = dequantize_to(self.raw[local.clamp(0, max(self.n_rows - 1, 0))], self.qtype, torch.float32)
            x = torch.where(held[:, None], rows * self.scale, 0.0).to(self.dtype)
        return x if self.all_reduce is None else self.all_reduce(x)


class Rope(torch.nn.Module):
    """Rotary position embedding, in llama.cpp's NORM (adjacent pairs) or NEOX (halves) layout."""

    def __init__(self, head_dim: int, base: float, scale: float, neox: bool, freq_factors: torch.Tensor | None,
                 device: torch.device) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
        if freq_factors is not None:
            inv_freq = inv_freq / freq_factors.float().to(device)
        self.inv_freq = inv_freq / scale  # position p turns pair i by p * inv_freq[i]
        self.neox = neox


class Attention(torch.nn.Module):
    """Self-attention over this rank's query heads. `wqkv` yields q, k and v side by side."""

    def __init__(self, config: ModelConfig, q_heads: range, kv_heads: range, wqkv: StackedLinear, wo: StackedLinear,
                 q_norm: RMSNorm | None, k_norm: RMSNorm | None, rope: Rope, window: int) -> None:
        super().__init__()
        self.window = window  # sliding-window layers see only the last `window` keys
        self.wqkv, self.wo = wqkv, wo
        self.q_norm, self.k_norm, self.rope = q_norm, k_norm, rope
        self.n_q, self.n_kv, self.head_dim = len(q_heads), len(kv_heads), config.head_dim
        self.scale = config.attn_scale
        kv_of_q = [(q // config.n_group) - kv_heads.start for q in q_heads]
        per_kv = self.n_q // self.n_kv if self.n_kv else 0
        # Query heads that share a KV head are batched against it (no K/V copy), as long as
        # each KV head serves a contiguous, equal run of them; otherwise K/V are gathered.
        self.group = per_kv if kv_of_q == [i // max(per_kv, 1) for i in range(self.n_q)] else 0
        self.register_buffer("kv_of_q", torch.tensor(kv_of_q, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, k_cache: CacheTensor, v_cache: CacheTensor,
                mask: torch.Tensor | None, rounded: QuantizedRows | None = None) -> torch.Tensor:
        """`mask` [T, kv_len] selects the keys each query sees; None for one query token,
        which then reads the cache up to its own position. `rounded`: x rounded for wqkv."""
        T, hd = x.shape[0], self.head_dim
        q, k, v = self.wqkv(x, rounded).split([self.n_q * hd, self.n_kv * hd, self.n_kv * hd], dim=-1)
        q, k, v = q.reshape(T, self.n_q, hd), k.reshape(T, self.n_kv, hd), v.reshape(T, self.n_kv, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q)[0], self.k_norm(k)[0]
        q = rope_store_kv(q, k, v, self.rope.inv_freq, self.rope.neox, k_cache, v_cache, pos)
        rounded_out = None
        if self.n_q == 0:
            out = q.new_zeros(T, 0, hd)
        elif mask is None:
            q1 = q.view(self.n_kv, self.group, hd)
            # The kernel rounds its output for wo's GEMV, a head's values at a time.
            rounded_out = self.wo.rounded_input(1, q.device) if hd % 32 == 0 else None
            out = decode_attention(q1, k_cache, v_cache, pos, self.window, self.scale, rounded_out)
            out = out.view(1, self.n_q, hd)
        else:
            kv_len = mask.shape[-1]
            dtype = attention_dtype(q.dtype, k_cache, v_cache)
            out = self._attend(q, k_cache.read(kv_len, dtype), v_cache.read(kv_len, dtype), mask)
        return self.wo(out.reshape(T, self.n_q * hd), rounded_out)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T = q.shape[0]
        if q.is_cuda and self.window == 0 and self.group > 0:
            return causal_attention(q.to(keys.dtype), keys, values, self.scale).to(q.dtype)
        g = self.group
        if g == 0:
            keys, values, g = keys[self.kv_of_q], values[self.kv_of_q], 1
        n_kv = keys.shape[0]
        qg = q.to(keys.dtype).view(T, n_kv, g, self.head_dim).permute(1, 0, 2, 3).reshape(n_kv, T * g, self.head_dim)
        m = mask.repeat_interleave(g, dim=0) if g > 1 else mask
        if qg.is_cuda:
            out = F.scaled_dot_product_attention(qg, keys, values, attn_mask=m, scale=self.scale)
        else:  # torch's CPU SDPA costs milliseconds per call at these sizes; plain ops cost microseconds
            scores = (qg @ keys.transpose(1, 2)) * self.scale
            out = scores.masked_fill(~m, float("-inf")).softmax(-1) @ values
        return out.view(n_kv, T, g, self.head_dim).permute(1, 0, 2, 3).reshape(T, self.n_q, self.head_dim).to(q.dtype)


def causal_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """Queries [T, q_heads, D] at the last T positions of keys/values [kv_heads, L, D], each seeing
    the keys up to its own position (causal, aligned to the end), through a fused kernel
    (PyTorch picks flash or memory-efficient attention) with grouped-query heads: no mask, no copied K/V."""
    T, L = q.shape[0], keys.shape[1]
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0),
        attn_mask=causal_lower_right(T, L), scale=scale, enable_gqa=True,
    )
    return out[0].transpose(0, 1)


class FeedForward(torch.nn.Module):
    """Gated FFN; `gate_up` yields the gate and up projections side by side."""

    def __init__(self, gate_up: StackedLinear, down: StackedLinear, gelu: bool) -> None:
        super().__init__()
        self.gate_up, self.down, self.gelu = gate_up, down, gelu

    def forward(self, x: torch.Tensor, rounded: QuantizedRows | None = None) -> torch.Tensor:
        """`rounded`: x rounded for gate_up. The activation rounds its output for down."""
        gate_up = self.gate_up(x, rounded)
        act_rounded = self.down.rounded_input(gate_up.shape[0], gate_up.device)
        return self.down(gated_act(gate_up, self.gelu, act_rounded), act_rounded)


class Block(torch.nn.Module):
    """Under tensor split the attention and FFN outputs are partial sums over ranks. Where a
    post norm follows them (gemma3) they are summed here; otherwise the sum is left to the
    norm that adds them to the residual stream (`add_norm`), which fuses it on GPUs."""

    def __init__(self, attn_norm: RMSNorm, attn: Attention, ffn_norm: RMSNorm, ffn: FeedForward,
                 post_attn_norm: RMSNorm | None, post_ffn_norm: RMSNorm | None, swa: bool,
                 all_reduce: AllReduce, add_norm: AddNorm) -> None:
        super().__init__()
        self.attn_norm, self.attn, self.ffn_norm, self.ffn = attn_norm, attn, ffn_norm, ffn
        self.post_attn_norm, self.post_ffn_norm = post_attn_norm, post_ffn_norm
        self.swa = swa
        self.all_reduce, self.add_norm = all_reduce, add_norm

    def forward(self, x: torch.Tensor | None, pending: torch.Tensor | None, pos: torch.Tensor, k_cache: CacheTensor,
                v_cache: CacheTensor, masks: dict[bool, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual stream x plus the previous block's output `pending` (added here, fused with
        the norm; x is None where the stream starts as `pending`, a partial embedding); returns
        the new stream and this block's own output, still to be added."""
        rows = pending if x is None else x
        rounded = self.attn.wqkv.rounded_input(rows.shape[0], rows.device)
        normed, x = normed_sum(self.add_norm, self.attn_norm, pending, x, rounded)
        h = self.attn(normed, pos, k_cache, v_cache, masks[self.swa], rounded)
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(self.all_reduce(h))[0]
        rounded = self.ffn.gate_up.rounded_input(h.shape[0], h.device)
        normed, x = normed_sum(self.add_norm, self.ffn_norm, h, x, rounded)
        h = self.ffn(normed, rounded)
        if self.post_ffn_norm is not None:
            h = self.post_ffn_norm(self.all_reduce(h))[0]
        return x, h


def normed_sum(add_norm: AddNorm, norm: RMSNorm, output: torch.Tensor | None, residual: torch.Tensor | None,
               rounded: QuantizedRows | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(norm(output + residual), output + residual) through `add_norm`; the norm of the
    residual alone before the first block's output, or of the output alone (summed over
    ranks) where there is no residual yet."""
    if output is None:
        assert residual is not None
        return norm(residual, None, rounded)
    return add_norm(output, residual, norm.weight, norm.eps, rounded)


class Transformer(torch.nn.Module):
    """One rank's part of the model: optional embedding, some blocks, optional head."""

    def __init__(self, config: ModelConfig, embed: VocabEmbedding | None, blocks: list[Block],
                 norm: RMSNorm | None, head: StackedLinear | None, cache: KVCache, add_norm: AddNorm) -> None:
        super().__init__()
        self.config = config
        self.embed, self.norm, self.head, self.add_norm = embed, norm, head, add_norm
        self.blocks = torch.nn.ModuleList(blocks)
        self.cache = cache
        # One query token needs no mask where every attention can read its cache directly.
        self.maskless_decode = all(b.attn.group > 0 or b.attn.n_q == 0 for b in blocks)
        # Weights kept in GGUF blocks are dequantized again by every prompt pass.
        self.dequantizes_prompt_weights = any(
            isinstance(m, Linear) and m.packed is not None for m in self.blocks.modules())

    def long_context_from(self) -> int | None:
        """The position from which decode steps on the GPU run as `kernels.long_context_decode`
        launches them: the latest any layer's attention asks for; None where one launch serves
        every step."""
        device = self.cache.spec.device
        if device.type != "cuda":
            return None
        from llamatp.quant.gemv import sm_count

        firsts = [long_context_from(block.attn.n_kv, *self.cache.layer(i), sm_count(device))
                  for i, block in enumerate(self.blocks) if block.attn.n_q > 0]
        return None if not firsts or None in firsts else max(firsts)

    def forward(self, inputs: torch.Tensor, pos: torch.Tensor, kv_len: int, last_only: bool = True) -> torch.Tensor:
        """Token ids (first stage) or hidden states, at positions `pos`, attending to the first
        `kv_len` cache slots. Returns this rank's logits slice if it holds the head, else hidden states."""
        x: torch.Tensor | None = self.embed(inputs) if self.embed is not None else inputs
        single_token = pos.shape[0] == 1 and self.maskless_decode
        masks = {False: None, True: None} if single_token else self._masks(pos, kv_len)
        pending = None
        if self.embed is not None and self.embed.partial:  # summed over ranks by the first norm
            pending, x = x, None
        for i, block in enumerate(self.blocks):
            x, pending = block(x, pending, pos, *self.cache.layer(i), masks)
        if self.head is None:
            return x if pending is None else x + pending
        if last_only:
            x, pending = x[-1:], None if pending is None else pending[-1:]
        rounded = self.head.rounded_input(x.shape[0], x.device)
        # Logits in float32: the GEMV writes them so; other paths convert.
        normed = normed_sum(self.add_norm, self.norm, pending, x, rounded)[0]
        return self.head(normed, rounded, out_dtype=torch.float32).float()

    def _masks(self, pos: torch.Tensor, kv_len: int) -> dict[bool, torch.Tensor]:
        """Attention masks keyed by 'is a sliding-window layer'."""
        key_pos = torch.arange(kv_len, device=pos.device)
        causal = key_pos[None, :] <= pos[:, None]
        window = self.config.sliding_window
        if window <= 0:
            return {False: causal, True: causal}
        return {False: causal, True: causal & (pos[:, None] - key_pos[None, :] < window)}
