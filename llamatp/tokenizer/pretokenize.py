"""Split text into words before BPE, as llama.cpp's `unicode_regex_split` does.

Each pre-tokenizer is a list of regexes applied in turn: every regex splits each piece
left by the previous one, and the text between matches is kept as pieces too.

llama.cpp runs the GPT-2 and Llama-3 regexes as hand-written scanners and every other
regex through std::regex, on a "collapsed" copy of the text where each non-ASCII
codepoint is replaced by one byte standing for its Unicode category. Both paths are
reproduced here, with the category table llama.cpp generates from UnicodeData.txt
(`unicode-data.cpp`), read from Python's `unicodedata`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Codepoint flags, the bits of llama.cpp's `unicode_cpt_flags`.
UNDEFINED, NUMBER, LETTER, SEPARATOR, MARK, PUNCTUATION, SYMBOL, CONTROL = 1, 2, 4, 8, 16, 32, 64, 128
WHITESPACE = 256
_CATEGORY_FLAG = {"L": LETTER, "N": NUMBER, "Z": SEPARATOR, "M": MARK, "P": PUNCTUATION, "S": SYMBOL, "C": CONTROL}
# The White_Space property (PropList.txt), as listed in llama.cpp's generator.
WHITESPACE_CHARS = frozenset(map(chr, [
    *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
]))

_flags_cache: dict[str, int] = {}


def char_flags(ch: str) -> int:
    flags = _flags_cache.get(ch)
    if flags is None:
        category = unicodedata.category(ch)
        flags = UNDEFINED if category == "Cn" else _CATEGORY_FLAG[category[0]]
        if ch in WHITESPACE_CHARS:
            flags |= WHITESPACE
        _flags_cache[ch] = flags
    return flags


def _flags_of(text: str) -> list[int]:
    """Flags of every char, then two zeros: llama.cpp's flags for a position past the piece."""
    get = _flags_cache.get
    return [get(ch) or char_flags(ch) for ch in text] + [0, 0]


def _cut(text: str, ends: list[int]) -> list[str]:
    words: list[str] = []
    start = 0
    for end in ends:
        if end > start:
            words.append(text[start:end])
            start = end
    return words


GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NOT_WORD = WHITESPACE | LETTER | NUMBER


def _split_gpt2(text: str) -> list[str]:
    """llama.cpp's `unicode_regex_split_custom_gpt2`, step for step."""
    n, f, ends, pos = len(text), _flags_of(text), [], 0
    while pos < n:
        ch, flags = text[pos], f[pos]
        if ch == "'" and pos + 1 < n:
            if text[pos + 1] in "stmd":
                pos += 2
                ends.append(pos)
                continue
            if pos + 2 < n and text[pos + 1 : pos + 3] in ("re", "ve", "ll"):
                pos += 3
                ends.append(pos)
                continue
        flags2 = f[pos + 1] if ch == " " else flags
        if flags2 & (LETTER | NUMBER):  # ` ?\p{L}+` or ` ?\p{N}+`
            kind = flags2 & (LETTER | NUMBER)
            pos += ch == " "
            while f[pos] & kind:
                pos += 1
        elif not flags2 & _NOT_WORD and flags2:  # ` ?[^\s\p{L}\p{N}]+`
            pos += ch == " "
            while not f[pos] & _NOT_WORD and f[pos]:
                pos += 1
        else:
            n_space = 0
            while f[pos + n_space] & WHITESPACE:
                n_space += 1
            if n_space > 1 and pos + n_space < n:  # `\s+(?!\S)`: leave the last space to the next word
                pos += n_space - 1
            else:
                pos += max(n_space, 1)
        ends.append(pos)
    return _cut(text, ends)


def _split_llama3(text: str) -> list[str]:
    """llama.cpp's `unicode_regex_split_custom_llama3`, step for step."""
    n, f, ends, pos = len(text), _flags_of(text), [], 0
    while pos < n:
        ch, flags = text[pos], f[pos]
        # `(?i:'s|'t|'re|'ve|'m|'ll|'d)`: no non-ASCII codepoint lowercases to these letters
        if ch == "'" and pos + 1 < n:
            if text[pos + 1] in "sStTmMdD":
                pos += 2
                ends.append(pos)
                continue
            if pos + 2 < n and text[pos + 1 : pos + 3].lower() in ("re", "ve", "ll"):
                pos += 3
                ends.append(pos)
                continue
        if ch not in "\r\n" and not flags & NUMBER and (flags & LETTER or f[pos + 1] & LETTER):
            pos += 1  # `[^\r\n\p{L}\p{N}]?\p{L}+`
            while f[pos] & LETTER:
                pos += 1
            ends.append(pos)
            continue
        if flags & NUMBER:  # `\p{N}{1,3}`
            start = pos
            while f[pos] & NUMBER:
                pos += 1
                if pos - start >= 3:
                    ends.append(pos)
                    start = pos
            ends.append(pos)
            continue
        flags2 = f[pos + 1] if ch == " " else flags
        if not flags2 & _NOT_WORD:  # ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            pos += ch == " "
            while not f[pos] & _NOT_WORD and f[pos]:
                pos += 1
            while pos < n and text[pos] in "\r\n":
                pos += 1
            ends.append(pos)
            continue
        n_space, after_newline = 0, 0
        while f[pos + n_space] & WHITESPACE:
            if text[pos + n_space] in "\r\n":
                after_newline = pos + n_space + 1
            n_space += 1
        if after_newline:  # `\s*[\r\n]+`
            pos = after_newline
        elif n_space > 1 and pos + n_space < n:  # `\s+(?!\S)`
            pos += n_space - 1
        else:
            pos += max(n_space, 1)
        ends.append(pos)
    return _cut(text, ends)


# The category classes std::regex sees: the category's collapsed byte plus its ASCII members.
_CATEGORY_CLASS = {
    r"\p{N}": "\xd1" + "0-9",
    r"\p{L}": "\xd2" + "A-Za-z",
    r"\p{P}": "\xd3" + r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    r"\p{M}": "\xd4",
    r"\p{S}": "\xd5" + r"\$\+<->^`\|",
}
for _letter in ("Lu", "Ll", "Lt", "Lm", "Lo"):
    _CATEGORY_CLASS[rf"\p{{{_letter}}}"] = _CATEGORY_CLASS[r"\p{L}"]
_COLLAPSED_CHAR = {NUMBER: "\xd1", LETTER: "\xd2", PUNCTUATION: "\xd3", MARK: "\xd4", SYMBOL: "\xd5"}


class _CollapseTable(dict[int, str]):
    """str.translate table: ASCII stays, whitespace becomes \\v, the rest its category byte."""

    def __missing__(self, codepoint: int) -> str:
        ch = chr(codepoint)
        flags = char_flags(ch)
        collapsed = "\x0b" if flags & WHITESPACE else _COLLAPSED_CHAR.get(flags & 0xFF, "\xd0")
        self[codepoint] = collapsed
        return collapsed


_COLLAPSE = _CollapseTable({c: chr(c) for c in range(128)})
# std::wregex's \s only knows ASCII whitespace, so llama.cpp maps the rest to \v.
_WHITESPACE_TO_VT = {ord(ch): "\x0b" for ch in WHITESPACE_CHARS if ord(ch) > 0x7F}


def _collapse_regex(regex: str) -> str:
    """llama.cpp's rewrite of \\p{..} into collapsed classes (brackets tracked the same way)."""
    out, inside, i = [], False, 0
    while i < len(regex):
        ch = regex[i]
        if ch == "[" and (i == 0 or regex[i - 1] != "\\"):
            inside = True
        elif inside and ch == "]" and regex[i - 1] != "\\":
            inside = False
        elif regex.startswith("\\p{", i):
            close = regex.find("}", i + 3)
            category = regex[i : close + 1]
            if close != -1 and close <= i + 10 and category in _CATEGORY_CLASS:
                cls = _CATEGORY_CLASS[category]
                out.append(cls if inside else f"[{cls}]")
                i = close + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _end_anchor_to_python(regex: str) -> str:
    """ECMAScript `$` matches only at the end of the input: Python's `\\Z`."""
    out, inside, escaped = [], False, False
    for ch in regex:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "[]":
            inside = ch == "["
        elif ch == "$" and not inside:
            ch = r"\Z"
        out.append(ch)
    return "".join(out)


class _RegexSplit:
    """One regex run as llama.cpp's std::regex fallback runs it."""

    def __init__(self, regex: str) -> None:
        self.collapsed = any(category in regex for category in _CATEGORY_CLASS)
        if self.collapsed:
            regex = _collapse_regex(regex)
        # std::regex's \s, \d, \w and \b are ASCII-only, as with re.ASCII.
        self.pattern = re.compile(_end_anchor_to_python(regex), re.ASCII)

    def __call__(self, text: str) -> list[str]:
        subject = text.translate(_COLLAPSE if self.collapsed else _WHITESPACE_TO_VT)
        ends = []
        for match in self.pattern.finditer(subject):
            ends += match.span()
        ends.append(len(text))
        return _cut(text, ends)


_CUSTOM_SPLITS = {GPT2_REGEX: _split_gpt2, LLAMA3_REGEX: _split_llama3}


class PreTokenizer:
    """Splits text into the words BPE merges within."""

    def __init__(self, regexes: Sequence[str]) -> None:
        self.steps = [_CUSTOM_SPLITS.get(regex) or _RegexSplit(regex) for regex in regexes]

    def __call__(self, text: str) -> list[str]:
        pieces = [text]
        for step in self.steps:
            pieces = [word for piece in pieces for word in step(piece)]
        return pieces


@dataclass(frozen=True)
class PreTokenizerSpec:
    """What `tokenizer.ggml.pre` selects in llama.cpp: the regexes and the flags set with them."""

    regexes: tuple[str, ...]
    clean_spaces: bool = True  # tidy " ," and " 's" when detokenizing
    ignore_merges: bool = False  # a word that is itself a token skips the merges
    add_bos: bool = False
    has_bos: bool = True


_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_QWEN2 = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_BLOOM = r" ?[^(\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS + "?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK3 = (
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_STARCODER = (r"\p{N}", GPT2_REGEX)
# Escaped: several of these letters have canonically equivalent lookalikes (U+2126 vs U+03A9).
_DEEPSEEK_LLM = (
    "[\r\n]",
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134"
    "\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+$",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
    r"\p{N}+",
)


def _specs(names: str, spec: PreTokenizerSpec) -> dict[str, PreTokenizerSpec]:
    return dict.fromkeys(names.split(), spec)


# llama.cpp's `llama_vocab::impl::load` (pre-tokenizer names) and `llm_tokenizer_bpe` (regexes).
PRE_TOKENIZERS: dict[str, PreTokenizerSpec] = {
    "default": PreTokenizerSpec((r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", "[0-9][0-9][0-9]")),
    **_specs(
        "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
        PreTokenizerSpec((LLAMA3_REGEX,), ignore_merges=True, add_bos=True),
    ),
    **_specs("dbrx smaug-bpe", PreTokenizerSpec((LLAMA3_REGEX,))),
    **_specs("glm4 chatglm-bpe", PreTokenizerSpec((LLAMA3_REGEX,), has_bos=False)),
    **_specs(
        "gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
        "jina-v1-en jina-v2-code roberta-bpe exaone4 mpt olmo jais",
        PreTokenizerSpec((GPT2_REGEX,)),
    ),
    **_specs("trillion granite-docling", PreTokenizerSpec((GPT2_REGEX,), clean_spaces=False)),
    **_specs("starcoder refact codeshell exaone minerva-7b mellum2", PreTokenizerSpec(_STARCODER)),
    **_specs("command-r smollm", PreTokenizerSpec(_STARCODER, clean_spaces=False)),
    "falcon": PreTokenizerSpec((r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX, "[0-9][0-9][0-9]")),
    **_specs("stablelm2 megrez", PreTokenizerSpec((_QWEN2,))),
    **_specs(
        "qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan solar-open grok-2",
        PreTokenizerSpec((_QWEN2,), clean_spaces=False),
    ),
    "qwen35": PreTokenizerSpec(
        (
            _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        clean_spaces=False,
    ),
    "minicpm5": PreTokenizerSpec(
        (r"\p{N}{1,3}",
         _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
        ignore_merges=True,
    ),
    "deepseek-llm": PreTokenizerSpec(_DEEPSEEK_LLM, clean_spaces=False),
    "deepseek-coder": PreTokenizerSpec(
        ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", r"\p{N}"),
        clean_spaces=False,
    ),
    **_specs("deepseek-v3 hunyuan-dense hy_v4 joyai-llm", PreTokenizerSpec(_DEEPSEEK3, clean_spaces=False)),
    **_specs("bloom gpt3-finnish", PreTokenizerSpec((_BLOOM,))),
    "poro-chat": PreTokenizerSpec((_BLOOM,), clean_spaces=False),
    "viking": PreTokenizerSpec((_BLOOM, r"\p{N}"), clean_spaces=False),
    "tekken": PreTokenizerSpec((_TEKKEN,), clean_spaces=False, ignore_merges=True, add_bos=True),
    **_specs("gpt-4o llama4 kanana2 talkie minimax-m2", PreTokenizerSpec((_GPT4O,), clean_spaces=False)),
    "chameleon": PreTokenizerSpec(
        ("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\t\n]|    |  )", r"\p{N}",
         r"[\p{P}!-/:-@\[-`{-~]", GPT2_REGEX),
        clean_spaces=False,
        add_bos=True,
    ),
    **_specs(
        "bailingmoe bailingmoe2 llada-moe",
        PreTokenizerSpec(
            (r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]|\s+(?!\S)|\s+",),
            clean_spaces=False,
        ),
    ),
    "seed-coder": PreTokenizerSpec(
        (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",),
        clean_spaces=False,
    ),
    "ufakzeka": PreTokenizerSpec(
        (r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",), clean_spaces=False
    ),
    "laguna": PreTokenizerSpec((r"[^\n]+|[\n]+", _QWEN2), clean_spaces=False),
    "exaone-moe": PreTokenizerSpec(
        (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?"
         r"|\s*[\r\n]|\s+(?!\S)|\s+",),
    ),
    "jais-2": PreTokenizerSpec(
        (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         + "".join(rf"|\s{{{n}}}(?!\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4)) + r"|\s{1,2}(?!\S)|\s{1}",),
    ),
}
