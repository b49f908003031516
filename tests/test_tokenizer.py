"""The tokenizer reproduces llama.cpp: its own test vectors, round trips and special tokens."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.tokenizer import Tokenizer

VOCAB_DIR = Path(__file__).parents[2] / "shared" / "vocab"
VOCABS = sorted(p for p in VOCAB_DIR.glob("*.gguf") if p.with_name(p.name + ".inp").exists())
SEPARATOR = "\n__ggml_vocab_test__\n"


@functools.cache
def tokenizer(name: str) -> Tokenizer:
    return Tokenizer.from_gguf(VOCAB_DIR / name)


def read_cases(vocab: Path) -> list[tuple[str, list[int]]]:
    """The .inp/.out pairs, split exactly as llama.cpp's test-tokenizer-0 splits them."""
    raw = vocab.with_name(vocab.name + ".inp").read_bytes().decode("utf-8")
    inputs: list[str] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(SEPARATOR, pos)
        inputs.append(raw[pos:] if end < 0 else raw[pos:end])
        pos = len(raw) if end < 0 else end + len(SEPARATOR)
    lines = vocab.with_name(vocab.name + ".out").read_text().splitlines()
    assert len(inputs) == len(lines)
    return [(text, [int(tok) for tok in line.split()]) for text, line in zip(inputs, lines)]


def test_llama_cpp_vocab_files_are_present() -> None:
    assert VOCABS, f"no ggml-vocab-*.gguf with .inp/.out test vectors in {VOCAB_DIR}"


@pytest.mark.parametrize("vocab", VOCABS, ids=lambda p: p.stem)
def test_encode_matches_llama_cpp_test_vectors(vocab: Path) -> None:
    # test-tokenizer-0 tokenizes with add_special=false, parse_special=false
    tok = tokenizer(vocab.name)
    cases = read_cases(vocab)
    wrong = [(text, expected, got) for text, expected in cases
             if (got := tok.encode(text, add_special=False, parse_special=False)) != expected]
    assert cases
    assert not wrong


@pytest.mark.parametrize("vocab", VOCABS, ids=lambda p: p.stem)
def test_every_token_survives_detokenize_then_tokenize(vocab: Path) -> None:
    # test-tokenizer-1-spm; the byte-level BPE vocabs are sampled to keep this quick
    tok = tokenizer(vocab.name)
    stride = 1 if tok.is_spm else 11
    checked = 0
    for token in range(0, tok.vocab_size, stride):
        try:
            text = tok.detokenize([token], special=True).decode("utf-8")
        except UnicodeDecodeError:
            continue  # a lone byte of a multi-byte character cannot be typed in
        ids = tok.encode(text, add_special=False, parse_special=True)
        assert tok.decode(ids, special=True) == text, (token, text, ids)
        checked += 1
    assert checked > tok.vocab_size // stride // 2


@pytest.mark.parametrize("vocab", VOCABS, ids=lambda p: p.stem)
def test_codepoints_survive_tokenize_then_detokenize(vocab: Path) -> None:
    # test-tokenizer-1-*'s codepoint loop, sampled (surrogates and the unassigned planes
    # are skipped there too); U+2581 is SentencePiece's space
    tok = tokenizer(vocab.name)
    codepoints = [*range(0x3000), *range(0x3000, 0xD800, 11), *range(0xE000, 0x40000, 29),
                  *range(0xE0000, 0x110000, 29)]
    for cp in codepoints:
        text = chr(cp)
        if cp != 0x2581:
            assert tok.decode(tok.encode(text, add_special=False, parse_special=True), special=True) == text, hex(cp)


def test_the_128k_llama3_tokenizer_round_trips_10kb_of_mixed_scripts() -> None:
    tok = Tokenizer.from_gguf(VOCAB_DIR / "ggml-vocab-llama-bpe.gguf")
    text = ("The llama (Lama glama) is a domesticated South American camelid, 1,234 of them. "
            "Ламы — домашние животные. 骆马是驯养的。🦙\n") * 80
    ids = tok.encode(text[:10_000], add_special=False)
    assert len(ids) > 2000
    assert tok.decode(ids) == text[:10_000]


def test_bos_is_added_when_the_model_asks_for_it() -> None:
    llama3, gpt2, spm = tokenizer("ggml-vocab-llama-bpe.gguf"), tokenizer("ggml-vocab-gpt-2.gguf"), tokenizer(
        "ggml-vocab-llama-spm.gguf")
    # llama-bpe has no add_bos_token key: llama.cpp's default for that pre-tokenizer is true
    assert llama3.encode("Hello") == [llama3.bos_id, *llama3.encode("Hello", add_special=False)]
    assert spm.encode("Hello") == [spm.bos_id, *spm.encode("Hello", add_special=False)]
    assert gpt2.encode("Hello") == gpt2.encode("Hello", add_special=False)


def test_add_bos_token_metadata_overrides_the_default() -> None:
    metadata = dict(GGUFFile(VOCAB_DIR / "ggml-vocab-llama-bpe.gguf").metadata)
    metadata["tokenizer.ggml.add_bos_token"] = False
    metadata["tokenizer.ggml.add_eos_token"] = True
    tok = Tokenizer.from_metadata(metadata)
    assert tok.encode("Hi") == [*tok.encode("Hi", add_special=False), tok.eos_id]


def test_control_tokens_in_text_are_parsed_only_when_asked() -> None:
    tok = tokenizer("ggml-vocab-llama-bpe.gguf")
    assert tok.token_text(tok.bos_id) == "<|begin_of_text|>"
    text = "<|begin_of_text|>Hi there"
    assert tok.encode(text, add_special=False, parse_special=True) == [
        tok.bos_id, *tok.encode("Hi there", add_special=False)]
    as_text = tok.encode(text, add_special=False, parse_special=False)
    assert tok.bos_id not in as_text
    assert tok.decode(as_text) == text


def test_user_defined_tokens_are_matched_even_without_parse_special() -> None:
    tok = tokenizer("ggml-vocab-qwen2.gguf")
    pad = tok.find_token("[PAD151650]")  # a user-defined token
    assert tok.encode("x[PAD151650]y", add_special=False) == [
        *tok.encode("x", add_special=False), pad, *tok.encode("y", add_special=False)]


def test_phi3_special_tokens_swallow_the_whitespace_after_them() -> None:
    tok = tokenizer("ggml-vocab-phi-3.gguf")
    end = tok.find_token("<|end|>")
    # and the SentencePiece space prefix comes back after a special token
    assert tok.encode("a<|end|>  \n b", add_special=False, parse_special=True) == [
        *tok.encode("a", add_special=False), end, *tok.encode("b", add_special=False)]
    assert end not in tok.encode("a<|end|>", add_special=False, parse_special=False)


def test_end_of_generation_tokens() -> None:
    llama3, qwen2 = tokenizer("ggml-vocab-llama-bpe.gguf"), tokenizer("ggml-vocab-qwen2.gguf")
    assert llama3.is_eog(llama3.eos_id)
    assert llama3.is_eog(llama3.find_token("<|eot_id|>"))
    assert llama3.eot_id == llama3.find_token("<|eot_id|>")
    assert qwen2.is_eog(qwen2.find_token("<|im_end|>"))
    assert not llama3.is_eog(llama3.bos_id)
    assert not qwen2.is_eog(qwen2.encode("Hello", add_special=False)[0])


def test_decode_cleans_spaces_only_where_llama_cpp_does() -> None:
    gpt2, qwen2 = tokenizer("ggml-vocab-gpt-2.gguf"), tokenizer("ggml-vocab-qwen2.gguf")
    text = "Hello , world ! It 's a ' quoted ' word ."
    assert gpt2.decode(gpt2.encode(text)) == "Hello, world! It's a'quoted'word."
    assert qwen2.decode(qwen2.encode(text, add_special=False)) == text


def test_sentencepiece_decode_drops_only_the_first_pieces_leading_space() -> None:
    tok = tokenizer("ggml-vocab-llama-spm.gguf")
    assert tok.decode(tok.encode("Hello world", add_special=False)) == "Hello world"
    # with BOS first, BOS's empty piece is the one stripped (llama_detokenize does the same)
    assert tok.decode(tok.encode("Hello world")) == " Hello world"


def test_pieces_of_control_and_byte_tokens() -> None:
    tok = tokenizer("ggml-vocab-llama-spm.gguf")
    assert tok.token_to_piece(tok.bos_id) == b""
    assert tok.token_to_piece(tok.bos_id, special=True) == b"<s>"
    assert tok.token_to_piece(tok.find_token("<0x41>")) == b"A"
    assert tok.token_to_piece(tok.find_token("\u2581world")) == b" world"
    with pytest.raises(LlamatpError, match="outside the vocabulary"):
        tok.token_to_piece(tok.vocab_size)


@pytest.mark.parametrize("name", ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"])
def test_stream_decoder_never_emits_part_of_a_character(name: str) -> None:
    tok = tokenizer(name)
    ids = tok.encode("\U0001f999\U0001f600", add_special=False)
    assert len(ids) > 2  # both emoji fall back to byte tokens
    decoder = tok.stream_decoder()
    chunks = [decoder.feed(token) for token in ids]
    assert "\ufffd" not in "".join(chunks)
    assert [c for c in chunks if c.strip()] == ["\U0001f999", "\U0001f600"]
    lead_byte = next(t for t in ids if tok.token_to_piece(t)[:1] >= b"\xc0")
    decoder.feed(lead_byte)  # an unfinished character at the end
    assert decoder.flush() == "\ufffd"


def test_unknown_tokenizer_model_or_pre_tokenizer_is_named() -> None:
    with pytest.raises(LlamatpError, match="'rwkv'"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "rwkv", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(LlamatpError, match="'no-such-pre'"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "no-such-pre",
                                 "tokenizer.ggml.tokens": ["a"], "tokenizer.ggml.merges": []})
