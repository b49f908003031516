"""Byte-level BPE (`tokenizer.ggml.model == "gpt2"`), as llama.cpp's llm_tokenizer_bpe_session."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from llamatp.tokenizer.pretokenize import PreTokenizer


def _gpt2_byte_chars() -> list[str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 stays, the rest moves past 255."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


BYTE_TO_CHAR = _gpt2_byte_chars()
CHAR_TO_BYTE = {ch: byte for byte, ch in enumerate(BYTE_TO_CHAR)}
_ENCODE_BYTES = {byte: ch for byte, ch in enumerate(BYTE_TO_CHAR)}


def byte_encode(word: str) -> str:
    """The UTF-8 bytes of `word`, each written as its GPT-2 stand-in char."""
    return word.encode("utf-8").decode("latin-1").translate(_ENCODE_BYTES)


def byte_decode(token_text: str) -> bytes:
    """Token text back to bytes (llama.cpp's llama_decode_text, its odd fallback included)."""
    out = bytearray()
    for ch in token_text:
        byte = CHAR_TO_BYTE.get(ch)
        if byte is None:
            out += b"[UNK_BYTE_0x" + ch.encode().hex().encode() + token_text.encode() + b"]"
        else:
            out.append(byte)
    return bytes(out)


def merge(word: str, ranks: dict[str, int]) -> list[str]:
    """Merge adjacent symbols, lowest merge rank first and leftmost among equals."""
    symbols = list(word)
    if len(symbols) < 2:
        return symbols
    following = [*range(1, len(symbols)), -1]
    preceding = list(range(-1, len(symbols) - 1))
    queue: list[tuple[int, int, int, str]] = []

    def push(left: int, right: int) -> None:
        rank = ranks.get(symbols[left] + " " + symbols[right])
        if rank is not None:
            heapq.heappush(queue, (rank, left, right, symbols[left] + symbols[right]))

    for i in range(len(symbols) - 1):
        push(i, i + 1)
    while queue:
        _, left, right, text = heapq.heappop(queue)
        if not symbols[left] or not symbols[right] or symbols[left] + symbols[right] != text:
            continue  # one side already merged into something else
        symbols[left], symbols[right] = text, ""
        following[left] = following[right]
        if following[right] >= 0:
            preceding[following[right]] = left
        if preceding[left] >= 0:
            push(preceding[left], left)
        if following[left] >= 0:
            push(left, following[left])
    return [symbol for symbol in symbols if symbol]


class BpeModel:
    """Pre-tokenize, byte-encode each word, merge, look the pieces up."""

    def __init__(
        self, token_ids: dict[str, int], merges: Sequence[str], pre_tokenizer: PreTokenizer, ignore_merges: bool
    ) -> None:
        self.token_ids = token_ids
        # Keyed by the merge line itself ("left right"); the first of duplicate lines wins.
        self.ranks = dict(zip(reversed(merges), range(len(merges) - 1, -1, -1)))
        self.pre_tokenizer = pre_tokenizer
        self.ignore_merges = ignore_merges
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self.pre_tokenizer(text):
            cached = self._cache.get(word)
            if cached is None:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                cached = self._cache[word] = self._encode_word(byte_encode(word))
            ids += cached
        return ids

    def _encode_word(self, word: str) -> list[int]:
        if self.ignore_merges and word in self.token_ids:
            return [self.token_ids[word]]
        ids = []
        for piece in merge(word, self.ranks):
            token = self.token_ids.get(piece)
            if token is not None:
                ids.append(token)
            else:
                # llama.cpp looks each UTF-8 byte of the piece up as a one-byte token:
                # only ASCII ones can exist, the rest are dropped.
                ids += [self.token_ids[ch] for ch in piece if ch < "\x80" and ch in self.token_ids]
        return ids
