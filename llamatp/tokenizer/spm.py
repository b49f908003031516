"""SentencePiece-style BPE over scores (`tokenizer.ggml.model == "llama"`), as llama.cpp's
llm_tokenizer_spm_session: no pre-tokenizer, merges chosen by the score of the merged token."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence


def encode(
    text: str, token_ids: dict[str, int], scores: Sequence[float], byte_token: Callable[[int], int]
) -> list[int]:
    """`text` already has its spaces escaped to U+2581."""
    symbols = list(text)
    following = [*range(1, len(symbols)), -1]
    preceding = list(range(-1, len(symbols) - 1))
    # Highest score first, leftmost among equals; a merge is stale once either side changed.
    queue: list[tuple[float, int, int, int]] = []

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        token = token_ids.get(symbols[left] + symbols[right])
        if token is not None:
            heapq.heappush(queue, (-scores[token], left, right, len(symbols[left]) + len(symbols[right])))

    for i in range(1, len(symbols)):
        push(i - 1, i)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or len(symbols[left]) + len(symbols[right]) != size:
            continue
        symbols[left] += symbols[right]
        symbols[right] = ""
        following[left] = following[right]
        if following[right] >= 0:
            preceding[following[right]] = left
        push(preceding[left], left)
        push(left, following[left])

    ids = []
    for symbol in symbols:
        if not symbol:
            continue
        token = token_ids.get(symbol)
        if token is not None:
            ids.append(token)
        else:  # only single chars can be missing: every merge made a known token
            ids += [byte_token(byte) for byte in symbol.encode("utf-8")]
    return ids
