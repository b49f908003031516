"""The tokenizer a GGUF file describes, behaving as llama.cpp's `llama_vocab`."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.tokenizer import bpe, spm
from llamatp.tokenizer.pretokenize import PRE_TOKENIZERS, PreTokenizer

# llama.cpp's token attributes; GGUF's tokenizer.ggml.token_type maps onto them.
UNKNOWN, UNUSED, NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 2, 4, 8, 16, 32
LSTRIP, RSTRIP = 128, 256
_ATTR_OF_TYPE = {1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}

# Tokens llama.cpp recognises by their text (llama-vocab.cpp); each list is tried in order.
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
              "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
))
# Metadata keys of the special ids, after tokenizer.ggml.; the deprecated FIM names come last.
_SPECIAL_ID_KEYS = (
    ("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"), ("eom", "eom_token_id"),
    ("unk", "unknown_token_id"), ("sep", "seperator_token_id"), ("pad", "padding_token_id"),
    ("mask", "mask_token_id"), ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
    ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"), ("fim_rep", "fim_rep_token_id"),
    ("fim_sep", "fim_sep_token_id"), ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"),
    ("fim_mid", "middle_token_id"),
)
_C_SPACES = " \t\n\v\f\r"  # C isspace(), which llama.cpp's lstrip/rstrip use


class Tokenizer:
    """Text to token ids and back, exactly as llama.cpp does for the same GGUF metadata."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.model: str = metadata.get("tokenizer.ggml.model", "")
        if self.model not in ("llama", "gpt2"):
            raise LlamatpError(f"unsupported tokenizer model '{self.model}' (tokenizer.ggml.model)")
        self.is_spm = self.model == "llama"
        self.texts = _token_texts(metadata)
        self.token_ids: dict[str, int] = {text: i for i, text in enumerate(self.texts)}
        if len(self.token_ids) != len(self.texts):
            twice = next(text for i, text in enumerate(self.texts) if self.token_ids[text] != i)
            raise LlamatpError(f"the vocabulary lists the token '{twice}' twice (tokenizer.ggml.tokens)")
        self.attrs = _token_attrs(metadata, len(self.texts))

        # llama.cpp's defaults for each model type, which the metadata may override
        special: dict[str, int | None] = dict.fromkeys(name for name, _ in _SPECIAL_ID_KEYS)
        if self.is_spm:
            special.update(bos=1, eos=2, unk=0)
            self.scores = _token_scores(metadata, len(self.texts))
            self.clean_spaces, add_bos = False, True
        else:
            pre = metadata.get("tokenizer.ggml.pre") or "default"
            spec = PRE_TOKENIZERS.get(pre)
            if spec is None:
                raise LlamatpError(f"unknown pre-tokenizer type '{pre}' (tokenizer.ggml.pre)")
            merges = metadata.get("tokenizer.ggml.merges")
            if merges is None:
                raise LlamatpError("the BPE tokenizer has no merges (tokenizer.ggml.merges)")
            self.bpe = bpe.BpeModel(self.token_ids, merges, PreTokenizer(spec.regexes), spec.ignore_merges)
            special.update(bos=11 if spec.has_bos else None, eos=11)
            self.clean_spaces, add_bos = spec.clean_spaces, spec.add_bos
        self.add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", self.is_spm))
        self.add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos))
        self.add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))

        for name, key in _SPECIAL_ID_KEYS:
            if (special[name] or 0) >= len(self.texts):
                special[name] = None
            value = metadata.get(f"tokenizer.ggml.{key}")
            if isinstance(value, int) and 0 <= value < len(self.texts):
                special[name] = value
        self.bos_id, self.eos_id = special["bos"], special["eos"]
        self._bos = [self.bos_id] if self.add_bos and self.bos_id is not None else []
        self._eos = [self.eos_id] if self.add_eos and self.eos_id is not None else []
        for wanted, added, name in ((self.add_bos, self._bos, "bos"), (self.add_eos, self._eos, "eos")):
            if wanted and not added:
                raise LlamatpError(f"tokenizer.ggml.add_{name}_token is true, but the model has no {name} token")
        self._find_tokens_by_text(special)
        self.eot_id, self.eom_id = special["eot"], special["eom"]
        self.unk_id, self.pad_id = special["unk"], special["pad"]
        self.eog_ids = self._end_of_generation_ids(special)
        # Matched in the text longest first (llama.cpp compares byte lengths).
        specials = [t for t, attrs in enumerate(self.attrs) if attrs & (CONTROL | USER_DEFINED | UNKNOWN)]
        self._special_tokens = sorted(specials, key=lambda t: -len(self.texts[t].encode()))
        name = str(metadata.get("general.name", "")).lower()
        if "phi-3" in name or "phi3" in name:
            self._strip_space_after_phi3_special_tokens()
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Tokenizer:
        return cls(metadata)

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tokenizer:
        return cls(GGUFFile(path).metadata)

    # --- vocabulary ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.texts)

    def token_text(self, token: int) -> str:
        """The token as the vocabulary spells it (GPT-2 byte chars, U+2581 for spaces)."""
        return self.texts[self._check(token)]

    def find_token(self, text: str) -> int | None:
        return self.token_ids.get(text)

    def is_eog(self, token: int) -> bool:
        """Does this token end generation (eos, eot, eom, and those llama.cpp knows by text)?"""
        return token in self.eog_ids

    def _check(self, token: int) -> int:
        if not 0 <= token < len(self.texts):
            raise LlamatpError(f"token id {token} is outside the vocabulary of {len(self.texts)} tokens")
        return token

    # --- encoding -----------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`, as llama_tokenize(add_special, parse_special).

        add_special adds BOS/EOS when the model asks for them; parse_special turns control
        tokens written in the text (like `<|eot_id|>`) into their ids. User-defined tokens
        are always matched.
        """
        fragments = self._split_special(text, parse_special) if text else []
        ids = list(self._bos) if add_special else []
        previous_is_special = True
        for fragment in fragments:
            if isinstance(fragment, int):
                ids.append(fragment)
                previous_is_special = True
            elif self.is_spm:
                # SentencePiece's dummy prefix, also after every special token
                if self.add_space_prefix and previous_is_special:
                    fragment = " " + fragment
                ids += spm.encode(fragment.replace(" ", "\u2581"), self.token_ids, self.scores, self._byte_token)
                previous_is_special = False
            else:
                ids += self.bpe.encode(fragment)
        return ids + self._eos if add_special else ids

    def _split_special(self, text: str, parse_special: bool) -> list[str | int]:
        """llama.cpp's tokenizer_st_partition: cut special tokens out of the text, longest first."""
        fragments: list[str | int] = [text]
        for token in self._special_tokens:
            if not parse_special and self.attrs[token] & (CONTROL | UNKNOWN):
                continue
            token_text = self.texts[token]
            if token_text not in text:
                continue
            lstrip, rstrip = self.attrs[token] & LSTRIP, self.attrs[token] & RSTRIP
            split: list[str | int] = []
            for fragment in fragments:
                if isinstance(fragment, int):
                    split.append(fragment)
                    continue
                parts = fragment.split(token_text)
                for i, part in enumerate(parts):
                    if i > 0:
                        split.append(token)
                        part = part.lstrip(_C_SPACES) if rstrip else part
                    if i < len(parts) - 1 and lstrip:
                        part = part.rstrip(_C_SPACES)
                    if part:
                        split.append(part)
            fragments = split
        return fragments

    def _byte_token(self, byte: int) -> int:
        token = self.token_ids.get(f"<0x{byte:02X}>")
        if token is None and byte < 0x80:
            token = self.token_ids.get(chr(byte))
        if token is None:
            raise LlamatpError(f"the vocabulary has no token for byte 0x{byte:02X}")
        return token

    # --- decoding -----------------------------------------------------------------------

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for; control tokens are empty unless `special`."""
        attrs = self.attrs[self._check(token)]
        if not special and attrs & (UNKNOWN | CONTROL):
            return b""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token, attrs)
        return piece

    def _piece(self, token: int, attrs: int) -> bytes:
        text = self.texts[token]
        if attrs & (UNKNOWN | CONTROL | USER_DEFINED):
            return text.encode()
        if attrs & NORMAL:
            return text.replace("\u2581", " ").encode() if self.is_spm else bpe.byte_decode(text)
        if attrs & BYTE:
            return bytes([int(text[3:5], 16)])
        return b""

    def detokenize(self, tokens: Iterable[int], special: bool = False) -> bytes:
        """llama_detokenize(remove_special=false, unparse_special=special)."""
        pieces = [self.token_to_piece(token, special) for token in tokens]
        if pieces and self.add_space_prefix and pieces[0].startswith(b" "):
            pieces[0] = pieces[0][1:]
        text = b"".join(pieces)
        return _clean_spaces(text) if self.clean_spaces else text

    def decode(self, tokens: Iterable[int], special: bool = False) -> str:
        return self.detokenize(tokens, special).decode("utf-8", errors="replace")

    def stream_decoder(self, special: bool = False) -> StreamDecoder:
        return StreamDecoder(self, special)

    # --- loading ------------------------------------------------------------------------

    def _find_tokens_by_text(self, special: dict[str, int | None]) -> None:
        """EOT, EOM and FIM tokens the metadata does not name, found by their text.

        llama.cpp scans a hash map and keeps whichever candidate it meets first; here the
        first of each list wins. Either way every candidate ends generation.
        """
        for name, texts in (("eot", _EOT_TEXTS), ("eom", ("<|eom_id|>",)), *_FIM_TEXTS.items()):
            if special[name] is None:
                token = next((self.token_ids[t] for t in texts if t in self.token_ids), None)
                if token is not None:
                    self.attrs[token] |= CONTROL  # llama.cpp forces control-looking tokens to control
                special[name] = token

    def _end_of_generation_ids(self, special: dict[str, int | None]) -> frozenset[int]:
        named = (special[name] for name in ("fim_pad", "fim_rep", "fim_sep", "eos", "eot", "eom"))
        eog = {token for token in named if token is not None}
        for text in _EOG_TEXTS & self.token_ids.keys():
            eog.add(self.token_ids[text])
            self.attrs[self.token_ids[text]] |= CONTROL
        for text in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):  # gpt-oss shows these
            if text in self.token_ids:
                self.attrs[self.token_ids[text]] = USER_DEFINED
        eog_texts = {self.texts[token] for token in eog}
        # gpt-oss and solar-open: <|end|> ends a message, not the generation
        end = self.token_ids.get("<|end|>")
        ends_calls = bool(eog_texts & {"<|call|>", "<|calls|>"}) and bool(eog_texts & {"<|return|>", "<|flush|>"})
        if end is not None and end in eog and ends_calls:
            eog.discard(end)
            self.attrs[end] = USER_DEFINED
        # gemma4 and paddleocr: </s> is ordinary text
        s_end = self.token_ids.get("</s>")
        if s_end is not None and s_end in eog and "<|tool_response>" in eog_texts:
            eog.discard(s_end)
            self.attrs[s_end] = NORMAL
        return frozenset(eog)

    def _strip_space_after_phi3_special_tokens(self) -> None:
        """llama.cpp sets rstrip on Phi-3's special tokens, except these three."""
        for token in [*self._special_tokens, self.token_ids.get("</s>")]:
            if token is not None:
                self.attrs[token] |= RSTRIP
        for text in ("<unk>", "<s>", "<|endoftext|>"):
            if text in self.token_ids:
                self.attrs[self.token_ids[text]] &= ~RSTRIP


class StreamDecoder:
    """Turns generated tokens into text as they come, holding back incomplete UTF-8."""

    def __init__(self, tokenizer: Tokenizer, special: bool = False) -> None:
        self._piece = partial(tokenizer.token_to_piece, special=special)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._utf8.decode(self._piece(token))

    def flush(self) -> str:
        """Whatever is left: a dangling partial character becomes U+FFFD."""
        return self._utf8.decode(b"", final=True)


def _token_texts(metadata: Mapping[str, Any]) -> list[str]:
    texts = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(texts, list) or not texts:
        raise LlamatpError("the model has no vocabulary (tokenizer.ggml.tokens)")
    return [text or f"[EMPTY_{i}]" for i, text in enumerate(texts)]


def _token_attrs(metadata: Mapping[str, Any], n_tokens: int) -> list[int]:
    types = metadata.get("tokenizer.ggml.token_type")
    if types is None:
        return [NORMAL] * n_tokens
    if len(types) < n_tokens:
        raise LlamatpError(f"tokenizer.ggml.token_type has {len(types)} entries for {n_tokens} tokens")
    return [_ATTR_OF_TYPE.get(t, 0) for t in types[:n_tokens]]


def _token_scores(metadata: Mapping[str, Any], n_tokens: int) -> list[float]:
    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None:
        return [0.0] * n_tokens
    if len(scores) < n_tokens:
        raise LlamatpError(f"tokenizer.ggml.scores has {len(scores)} entries for {n_tokens} tokens")
    return scores


def _clean_spaces(text: bytes) -> bytes:
    """llama.cpp's clean_up_tokenization_spaces: three passes over the bytes."""
    if not text:
        return text
    # " ?", " !", " .", " ," lose their space
    first = bytearray(text[:1])
    for prev, x in zip(text, text[1:]):
        if prev == 0x20 and x in b"?!.,":
            first.pop()
        first.append(x)
    # " ' " loses both spaces; llama.cpp zeroes the skipped space in place, which the
    # next character's look-behind then sees, so do the same
    second, i = bytearray(first[:1]), 1
    while i < len(first):
        x = first[i]
        if x == 0x27 and i + 1 < len(first) and first[i - 1] == 0x20 and first[i + 1] == 0x20:
            second.pop()
            i += 1
            first[i] = 0
        second.append(x)
        i += 1
    # " 's", " 'm", " 're", " 've" lose their space
    third = bytearray(second[:1])
    for i in range(1, len(second)):
        x = second[i]
        if second[i - 1] == 0x20 and x == 0x27 and i + 1 < len(second):
            if second[i + 1] in b"sm" or (i + 2 < len(second) and second[i + 1 : i + 3] in (b"re", b"ve")):
                third.pop()
        third.append(x)
    return bytes(third)


def print_token_pieces(tokens: list[int], tokenizer: Tokenizer, stream: TextIO) -> None:
    """`   id -> 'piece'` lines as llama.cpp prints them: each token's bytes as it detokenizes them
    (special tokens spelled out), written raw even where a token holds part of a character."""
    stream.flush()
    for t in tokens:
        stream.buffer.write(f"{t:6d} -> '".encode() + tokenizer.token_to_piece(t, True) + b"'\n")
    stream.buffer.flush()
